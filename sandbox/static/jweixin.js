/* The sandbox's stand-in for WeChat's JS-SDK (jweixin-1.6.0.js): the part of
   `wx` Fenxiao's pages use. wx.config is checked by the sandbox platform as
   WeChat checks it (sha1 over the current jsapi_ticket, nonce, timestamp and
   this page's address without its fragment); a wrong one shows
   "invalid signature" and calls wx.error. The bar it draws plays WeChat's
   "…" menu: 分享给朋友 and 分享到朋友圈 share what the page set with
   updateAppMessageShareData / updateTimelineShareData. */
(function () {
  var VERIFY = '/sandbox/jssdk/verify', SHARE = '/sandbox/share';
  var state = 'idle', allowed = [], readyFns = [], errorFns = [], friendCard = null, timelineCard = null;
  var bar, status, text = '微信（沙箱）';

  function here() { return location.href.split('#')[0]; }

  var log = window.wxSandboxLog = [];  // what the bar said, in order (for the curious, and tests)

  function show(message, st) {
    state = st;
    text = message;
    log.push(message);
    if (!status) return;
    status.textContent = text;
    bar.setAttribute('data-state', st);
  }

  function drawBar() {
    bar = document.createElement('div');
    bar.id = 'wx-sim';
    bar.setAttribute('data-state', state);
    bar.style.cssText = 'display:flex;align-items:center;gap:6px;padding:6px 8px;background:#2e2e2e;color:#fff;' +
      'font:12px/1.4 -apple-system,sans-serif;position:relative;z-index:20';
    status = document.createElement('span');
    status.id = 'wx-sim-status';
    status.style.cssText = 'flex:1;min-width:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap';
    status.textContent = text;
    bar.appendChild(status);
    [['friend', '分享给朋友'], ['timeline', '分享到朋友圈']].forEach(function (b) {
      var btn = document.createElement('button');
      btn.type = 'button';
      btn.id = 'wx-share-' + b[0];
      btn.textContent = b[1];
      btn.style.cssText = 'border:0;border-radius:4px;background:#07c160;color:#fff;padding:5px 8px;font-size:12px';
      btn.onclick = function () { share(b[0]); };
      bar.appendChild(btn);
    });
    document.body.insertBefore(bar, document.body.firstChild);
  }

  function share(kind) {
    // Without a working config WeChat shares the bare page: its title and address.
    var card = (kind === 'friend' ? friendCard : timelineCard) ||
      {title: document.title, desc: here(), link: here(), imgUrl: ''};
    var form = document.createElement('form');
    form.method = 'post';
    form.action = SHARE;
    var fields = {kind: kind, title: card.title || '', desc: card.desc || '', link: card.link || '',
                  imgUrl: card.imgUrl || '', page: here()};
    Object.keys(fields).forEach(function (k) {
      var input = document.createElement('input');
      input.type = 'hidden';
      input.name = k;
      input.value = fields[k];
      form.appendChild(input);
    });
    document.body.appendChild(form);
    form.submit();
  }

  function call(fns, arg) { fns.forEach(function (fn) { try { fn(arg); } catch (e) { setTimeout(function () { throw e; }); } }); }

  var wx = {
    config: function (c) {
      show('wx.config 验证中…', 'checking');
      var xhr = new XMLHttpRequest();
      xhr.open('POST', VERIFY);
      xhr.setRequestHeader('Content-Type', 'application/json');
      xhr.onload = function () {
        var res = {errMsg: 'config:fail'};
        try { res = JSON.parse(xhr.responseText); } catch (e) { /* keep the failure */ }
        if (res.errMsg === 'config:ok') {
          allowed = c.jsApiList || [];
          show('JS-SDK 已就绪（签名正确）', 'ready');
          call(readyFns);
        } else {
          show(res.errMsg.replace(/^config:/, ''), 'error');
          call(errorFns, res);
        }
      };
      xhr.send(JSON.stringify({appId: c.appId, timestamp: c.timestamp, nonceStr: c.nonceStr,
                               signature: c.signature, jsApiList: c.jsApiList, url: here()}));
    },
    ready: function (fn) { readyFns.push(fn); if (state === 'ready') fn(); },
    error: function (fn) { errorFns.push(fn); },
    checkJsApi: function (o) {
      var result = {};
      (o.jsApiList || []).forEach(function (n) { result[n] = typeof wx[n] === 'function'; });
      if (o.success) o.success({checkResult: result, errMsg: 'checkJsApi:ok'});
    }
  };

  function shareApi(name, set) {
    wx[name] = function (o) {
      o = o || {};
      if (state !== 'ready' || allowed.indexOf(name) < 0) {
        if (o.fail) o.fail({errMsg: name + ':fail, the permission value is offline verifying'});
        return;
      }
      var a = document.createElement('a');
      a.href = o.link || '';
      if (a.host !== location.host) {  // the link's domain must be the account's JS-safe domain
        show(name + ':fail, invalid url domain', 'error');
        if (o.fail) o.fail({errMsg: name + ':fail, invalid url domain'});
        return;
      }
      set({title: o.title, desc: o.desc, link: o.link, imgUrl: o.imgUrl});
      show('分享卡片已设置：' + (o.title || ''), 'ready');
      if (o.success) o.success({errMsg: name + ':ok'});
    };
  }
  shareApi('updateAppMessageShareData', function (card) { friendCard = card; });
  shareApi('updateTimelineShareData', function (card) { timelineCard = card; });

  window.wx = window.jWeixin = wx;
  if (document.body) drawBar();
  else document.addEventListener('DOMContentLoaded', drawBar);
})();
