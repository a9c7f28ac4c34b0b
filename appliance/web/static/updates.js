// Uploads a release file (a tar made by `cloudbox update pack`) from the
// Updates page to POST /api/v1/update/releases, with the session's CSRF
// token, and shows the box's answer.
"use strict";
(function () {
  var form = document.getElementById("release-upload");
  if (!form) {
    return;
  }
  var out = document.getElementById("release-upload-result");
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var file = form.elements["release"].files[0];
    if (!file) {
      out.textContent = "Choose a release file first.";
      return;
    }
    out.textContent = "Uploading " + file.name + "…";
    fetch("/api/v1/update/releases", {
      method: "POST",
      headers: { "X-CSRF-Token": form.dataset.csrf, "Content-Type": "application/x-tar" },
      body: file,
      credentials: "same-origin",
    }).then(function (resp) {
      return resp.json().then(function (v) {
        if (resp.ok) {
          out.textContent = "Release " + v.version + " accepted" + (v.complete ? "." : ": " + v.error) + " Reload the page to follow it.";
        } else {
          out.textContent = v.error || "The box answered HTTP " + resp.status + ".";
        }
      });
    }).catch(function (err) {
      out.textContent = "The upload failed: " + err;
    });
  });
})();
