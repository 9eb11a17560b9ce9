// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  document.addEventListener("htmx:configRequest", function (e) {
    if (meta) e.detail.headers["X-CSRF-Token"] = meta.content;
  });

  // Character counter: URLs count as 23 characters, as on the server.
  function count(text) {
    return Array.from(text.replace(/https?:\/\/\S+/g, "x".repeat(23))
      .replace(/(^|[^\w])@(\w+)@[\w.-]+\w/g, "$1@$2")).length;
  }
  document.querySelectorAll("textarea[data-limit]").forEach(function (area) {
    var out = document.getElementById(area.getAttribute("aria-describedby"));
    var limit = parseInt(area.dataset.limit, 10);
    function update() {
      if (!out) return;
      var left = limit - count(area.value);
      out.textContent = left + " characters left";
      out.classList.toggle("over", left < 0);
    }
    area.addEventListener("input", update);
    update();
  });

  // Live "new posts" indicator over Server-Sent Events. data-live on the box tells CSS (and
  // the browser tests) whether the stream is listening: "ready" or "reconnecting".
  var box = document.getElementById("new-posts");
  if (box && window.EventSource && !new URLSearchParams(location.search).has("max_id")) {
    var n = 0, seen = {};
    var src = new EventSource(box.dataset.stream);
    src.addEventListener("ready", function () { box.dataset.live = "ready"; });
    src.addEventListener("error", function () { box.dataset.live = "reconnecting"; });
    src.addEventListener("update", function (e) {
      var id = JSON.parse(e.data).id;
      if (seen[id] || document.querySelector('[data-id="' + id + '"]')) return;
      seen[id] = true; n += 1;
      box.querySelector("a").textContent = "Show " + n + " new post" + (n === 1 ? "" : "s");
      box.hidden = false;
    });
    src.addEventListener("notification", function () {
      var badge = document.getElementById("unread");
      if (!badge) return;
      var v = (parseInt(badge.textContent, 10) || 0) + 1;
      badge.textContent = String(v);
      badge.setAttribute("aria-label", v + " unread");
      badge.hidden = false;
    });
  }
})();
