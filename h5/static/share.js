/* WeChat's share card for this page (PRODUCT.md flow 12).
   window.fxShare: {title, desc, link, imgUrl}; window.fxWx (inside WeChat
   only): {config, jsApiList, signUrl}. wx.config is signed for this page's
   address; if WeChat refuses it (wx.error), the page asks once more for a
   signature of its own location.href with a fresh ticket. Outside WeChat
   there is no SDK and nothing here runs. Plain ES5: old WeChat browsers. */
(function () {
  var share = window.fxShare, opts = window.fxWx, wx = window.wx;
  if (!share || !opts || !wx) return;
  var retried = false;

  function here() { return location.href.split('#')[0]; }

  function configure(c) {
    wx.config({debug: false, appId: c.appId, timestamp: c.timestamp, nonceStr: c.nonceStr,
               signature: c.signature, jsApiList: opts.jsApiList});
  }

  function sign(retry) {
    var xhr = new XMLHttpRequest();
    xhr.open('GET', opts.signUrl + '?url=' + encodeURIComponent(here()) + (retry ? '&retry=1' : ''));
    xhr.onload = function () {
      if (xhr.status === 200) configure(JSON.parse(xhr.responseText));
    };
    xhr.send();
  }

  wx.ready(function () {
    wx.updateAppMessageShareData({title: share.title, desc: share.desc, link: share.link, imgUrl: share.imgUrl});
    wx.updateTimelineShareData({title: share.title, link: share.link, imgUrl: share.imgUrl});
  });
  wx.error(function () {
    if (retried) return;
    retried = true;
    sign(true);
  });
  if (opts.config) configure(opts.config);
  else sign(false);
})();
