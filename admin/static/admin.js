// The admin's little JavaScript: htmx carries the CSRF token, shows a refused
// action's message in the page's message bar, and asks before destructive clicks.
document.addEventListener("htmx:configRequest", function (e) {
  var token = document.querySelector('meta[name="csrf-token"]');
  if (token) e.detail.headers["X-CSRFToken"] = token.content;
});
document.addEventListener("htmx:beforeSwap", function (e) {
  var status = e.detail.xhr.status;
  if (status >= 400 && status < 600 && status !== 401) {
    e.detail.shouldSwap = true;
    e.detail.isError = false;
    e.detail.target = document.getElementById("flash");
    e.detail.swapOverride = "innerHTML";
  }
});
document.addEventListener("htmx:sendError", function () {
  var flash = document.getElementById("flash");
  if (flash) flash.innerHTML = '<div class="ad-alert ad-alert--error">网络不通，操作没有提交，请稍后重试</div>';
});
document.addEventListener("click", function (e) {
  var all = e.target.closest("[data-check-all]");
  if (all) {
    document.querySelectorAll('input[name="' + all.dataset.checkAll + '"]').forEach(function (box) {
      box.checked = all.checked;
    });
  }
});
