(function () {
  var m = /^\/lives\/(\d+)\/?$/.exec(location.pathname);
  if (!m) return;
  var path = '/api/lives/' + m[1];
  // The same request as the page's Link preload header (web/ui_routes.py), which it reuses.
  var request = fetch(path, { credentials: 'same-origin' });
  request.catch(function () {});
  window.__streamdPrefetch = {};
  window.__streamdPrefetch[path] = request;
  ["/assets/LiveWatchView-CZhMm-nx.js","/assets/LiveWatchView-FRcFw4kU.css","/assets/app-DbAD3U6a.js","/assets/rolldown-runtime-BLXQ4ufn.js","/assets/HlsPlayer-BJ_HQkqI.js","/assets/HlsPlayer-BU9nlwBN.css","/assets/hls-22D11oyj.js","/assets/index-Cc-PZDuR.js","/assets/index-Bvmf7ne9.css","/assets/vue-D37tWHdj.js","/assets/LoadState-DpylgG2B.js","/assets/LoadState-Rbd9Sssd.css","/assets/PaywallPanel-BgBTpHLp.js","/assets/PaywallPanel-CFUHPIiZ.css","/assets/StatusTag-V5T5SoH8.js","/assets/NotFoundView-C-g-hYWW.js","/assets/NotFoundView-DAwMrgAp.css"].forEach(function (href) {
    var link = document.createElement('link');
    // crossorigin as on the tags Vite itself writes, or the browser will not reuse them.
    if (/\.css$/.test(href)) { link.rel = 'preload'; link.as = 'style'; }
    else { link.rel = 'modulepreload'; }
    link.crossOrigin = '';
    link.href = href;
    document.head.appendChild(link);
  });
})();
