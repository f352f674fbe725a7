// The viewer's time zone, for pages rendered on the server: kept in a cookie that the server
// reads (UTC until it is set). A page read (never a form's answer) rendered in another zone
// is rendered again, once.
(function () {
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  if (!zone || !/^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone)) { return; }
  document.cookie = "zoopay_tz=" + encodeURIComponent(zone) +
    "; path=/console; max-age=31536000; samesite=lax";
  var body = document.body;
  if (body && body.getAttribute("data-zone") !== zone && body.hasAttribute("data-reloadable")) {
    location.reload();
  }
})();
