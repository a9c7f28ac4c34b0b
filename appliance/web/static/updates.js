// Uploads a release file (a tar made by `cloudbox update pack`) from the
// Updates page to POST /api/v1/update/releases, with the session's CSRF
// token, and shows the box's answer. The texts come translated in the
// form's data- attributes, with %s for each value.
"use strict";
(function () {
  var form = document.getElementById("release-upload");
  if (!form) {
    return;
  }
  var out = document.getElementById("release-upload-result");
  var say = function (key) {
    var args = Array.prototype.slice.call(arguments, 1);
    return form.dataset[key].replace(/%s/g, function () { return String(args.shift()); });
  };
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var file = form.elements["release"].files[0];
    if (!file) {
      out.textContent = say("choose");
      return;
    }
    out.textContent = say("uploading", file.name);
    fetch("/api/v1/update/releases", {
      method: "POST",
      headers: { "X-CSRF-Token": form.dataset.csrf, "Content-Type": "application/x-tar" },
      body: file,
      credentials: "same-origin",
    }).then(function (resp) {
      return resp.json().then(function (v) {
        if (resp.ok) {
          out.textContent = (v.complete ? say("accepted", v.version) : say("incomplete", v.version, v.error)) + " " + say("reload");
        } else {
          out.textContent = v.error || say("http", resp.status);
        }
      });
    }).catch(function (err) {
      out.textContent = say("failed", err);
    });
  });
})();
