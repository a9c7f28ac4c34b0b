// The storage pages: uploads with progress, rename, delete and share links
// in the file browser (WebDAV requests with the session and its CSRF
// token), and vault uploads through the API. The texts come translated in
// data- attributes of the page, with %s for each value.
"use strict";

function text(el, key) {
  var args = Array.prototype.slice.call(arguments, 2);
  return el.dataset[key].replace(/%s/g, function () { return String(args.shift()); });
}

function send(method, url, csrf, body, headers, onProgress) {
  return new Promise(function (resolve, reject) {
    var x = new XMLHttpRequest();
    x.open(method, url);
    x.setRequestHeader("X-CSRF-Token", csrf);
    Object.keys(headers || {}).forEach(function (k) { x.setRequestHeader(k, headers[k]); });
    if (onProgress) {
      x.upload.onprogress = function (e) { if (e.lengthComputable) onProgress(100 * e.loaded / e.total); };
    }
    x.onload = function () { resolve(x); };
    x.onerror = function () { reject(new Error("network error")); };
    x.send(body);
  });
}

function encodePath(p) {
  return p.split("/").map(encodeURIComponent).join("/");
}

var browser = document.getElementById("browser");
if (browser) {
  var csrf = browser.dataset.csrf, dav = browser.dataset.dav, dir = browser.dataset.dir;
  var result = document.getElementById("result");
  var say = function (msg) { result.textContent = msg; };
  document.getElementById("upload").addEventListener("submit", async function (e) {
    e.preventDefault();
    var files = document.getElementById("upload-file").files;
    var bar = document.getElementById("upload-progress");
    bar.hidden = false;
    for (var i = 0; i < files.length; i++) {
      var f = files[i];
      var x = await send("PUT", dav + encodePath(dir + "/" + f.name), csrf, f, {}, function (p) { bar.value = p; });
      if (x.status === 507) { say(text(browser, "quota", f.name)); return; }
      if (x.status >= 300) { say(text(browser, "uploadFailed", f.name, x.status + " " + x.responseText)); return; }
    }
    location.reload();
  });
  document.getElementById("mkdir").addEventListener("submit", async function (e) {
    e.preventDefault();
    var x = await send("MKCOL", dav + encodePath(dir + "/" + document.getElementById("mkdir-name").value) + "/", csrf);
    if (x.status >= 300) { say(text(browser, "notCreated", x.status + " " + x.responseText)); return; }
    location.reload();
  });
  browser.parentNode.addEventListener("click", async function (e) {
    var b = e.target.closest("button[data-act]");
    if (!b) return;
    var row = b.closest("tr"), name = row.dataset.name, path = dir + "/" + name;
    var x;
    if (b.dataset.act === "delete") {
      if (!confirm(text(browser, "confirmDelete", name))) return;
      x = await send("DELETE", dav + encodePath(path), csrf);
    } else if (b.dataset.act === "rename") {
      var to = prompt(text(browser, "newName"), name);
      if (!to || to === name) return;
      x = await send("MOVE", dav + encodePath(path), csrf, null,
        { "Destination": location.origin + dav + encodePath(dir + "/" + to), "Overwrite": "F" });
    } else if (b.dataset.act === "share") {
      x = await send("POST", "/api/v1/storage/links", csrf, JSON.stringify({ path: path }), { "Content-Type": "application/json" });
      if (x.status === 201) { say(text(browser, "shareLink", location.origin + "/s/" + JSON.parse(x.responseText).token)); return; }
    }
    if (x.status >= 300) { say(text(browser, b.dataset.act + "Failed", x.status + " " + x.responseText)); return; }
    location.reload();
  });
}

var vaultForm = document.getElementById("vault-upload");
if (vaultForm) {
  vaultForm.addEventListener("submit", async function (e) {
    e.preventDefault();
    var f = document.getElementById("vault-file").files[0];
    var bar = document.getElementById("vault-progress"), out = document.getElementById("vault-result");
    bar.hidden = false;
    var x = await send("POST", "/api/v1/storage/vault?name=" + encodeURIComponent(f.name), vaultForm.dataset.csrf, f,
      { "Content-Type": "application/octet-stream" }, function (p) { bar.value = p; });
    if (x.status !== 201) { out.textContent = text(vaultForm, "notStored", x.responseText); return; }
    out.textContent = text(vaultForm, "stored", JSON.parse(x.responseText).cap);
  });
}
