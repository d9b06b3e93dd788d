(function () {
  var m = /^\/lives\/(\d+)\/?$/.exec(location.pathname);
  if (!m) return;
  var path = '/api/lives/' + m[1];
  // The same request as the page's Link preload header (web/ui_routes.py), which it reuses.
  var request = fetch(path, { credentials: 'same-origin' });
  request.catch(function () {});
  window.__streamdPrefetch = {};
  window.__streamdPrefetch[path] = request;
  ["/assets/LiveWatchView-Dl2-aNsZ.js","/assets/LiveWatchView-DEpDYq8c.css","/assets/rolldown-runtime-BLXQ4ufn.js","/assets/app-Bkm6DAbI.js","/assets/HlsPlayer-BmIvN8Qe.js","/assets/HlsPlayer-B3q7kUKK.css","/assets/hls-22D11oyj.js","/assets/index-DwYtZrVD.js","/assets/index-Bvmf7ne9.css","/assets/vue-DPw11_bI.js","/assets/LoadState-DMkSNnCt.js","/assets/LoadState-Rbd9Sssd.css","/assets/PaywallPanel--6rXtRsN.js","/assets/PaywallPanel-CFUHPIiZ.css","/assets/StatusTag-Dl8lPIvY.js","/assets/NotFoundView-p7UOk2cC.js","/assets/NotFoundView-DAwMrgAp.css"].forEach(function (href) {
    var link = document.createElement('link');
    // crossorigin as on the tags Vite itself writes, or the browser will not reuse them.
    if (/\.css$/.test(href)) { link.rel = 'preload'; link.as = 'style'; }
    else { link.rel = 'modulepreload'; }
    link.crossOrigin = '';
    link.href = href;
    document.head.appendChild(link);
  });
})();
