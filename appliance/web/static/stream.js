// Go live (WHIP) and the player (WHEP) of the panel's Streams pages.
// Answers carry every ICE candidate: no trickle, no public STUN or TURN
// server; the box's own TURN server (data-ice) for browsers that need a
// relay. "?relay=1" in the page's address uses only the relay. The texts
// come translated in data- attributes of #stream-app, with %s for each
// value.
"use strict";
(function () {
  const app = document.getElementById("stream-app");
  if (!app) return;
  const csrf = app.dataset.csrf;
  let iceServers = [];
  try { iceServers = JSON.parse(app.dataset.ice || "[]"); } catch (e) { iceServers = []; }
  const rtcConfig = { iceServers: iceServers };
  if (new URLSearchParams(location.search).get("relay") === "1") rtcConfig.iceTransportPolicy = "relay";
  const state = document.getElementById("stream-state");
  const errBox = document.getElementById("stream-error");
  let session = null;

  function say(key) {
    const args = Array.prototype.slice.call(arguments, 1);
    return app.dataset[key].replace(/%s/g, () => String(args.shift()));
  }

  // stateText is the text of a connectionState (new, connecting, ...).
  function stateText(s) {
    return app.dataset["state" + s.charAt(0).toUpperCase() + s.slice(1)] || s;
  }

  function showError(msg) {
    errBox.textContent = msg;
    errBox.hidden = false;
    state.textContent = stateText("failed");
  }

  function gathered(pc) {
    return new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      const t = setTimeout(resolve, 2000);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(t); resolve(); }
      });
    });
  }

  async function exchange(pc, url) {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const r = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/sdp", "X-CSRF-Token": csrf },
      body: pc.localDescription.sdp,
    });
    const body = await r.text();
    if (r.status !== 201) throw new Error(body.trim() || r.statusText);
    session = r.headers.get("Location");
    await pc.setRemoteDescription({ type: "answer", sdp: body });
  }

  function track(pc) {
    window.cbPC = pc;
    pc.addEventListener("connectionstatechange", () => { state.textContent = stateText(pc.connectionState); });
  }

  function stop(pc) {
    if (session) fetch(session, { method: "DELETE", headers: { "X-CSRF-Token": csrf } });
    session = null;
    pc.close();
    state.textContent = say("notLive");
  }

  if (app.dataset.mode === "golive") {
    const form = document.getElementById("golive-form");
    const stopBtn = document.getElementById("stop");
    const goBtn = document.getElementById("golive");
    let pc = null;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      errBox.hidden = true;
      const name = form.elements.name.value.trim();
      const desc = form.elements.description.value.trim();
      goBtn.disabled = true;
      try {
        const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
        document.getElementById("preview").srcObject = media;
        pc = new RTCPeerConnection(rtcConfig);
        for (const t of media.getTracks()) pc.addTransceiver(t, { direction: "sendonly" });
        track(pc);
        state.textContent = stateText("connecting");
        await exchange(pc, "/api/v1/streams/" + encodeURIComponent(name) + "/whip?description=" + encodeURIComponent(desc));
        stopBtn.disabled = false;
      } catch (e) {
        if (pc) pc.close();
        goBtn.disabled = false;
        showError(say("goFailed", e.message));
      }
    });
    stopBtn.addEventListener("click", () => {
      stop(pc);
      stopBtn.disabled = true;
      goBtn.disabled = false;
    });
  } else if (app.dataset.mode === "watch") {
    const video = document.getElementById("player");
    const pc = new RTCPeerConnection(rtcConfig);
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const ms = new MediaStream();
    pc.addEventListener("track", (ev) => { ms.addTrack(ev.track); video.srcObject = ms; });
    track(pc);
    document.getElementById("unmute").addEventListener("click", () => { video.muted = false; video.play(); });
    exchange(pc, "/api/v1/streams/" + encodeURIComponent(app.dataset.name) + "/whep")
      .catch((e) => showError(say("playFailed", e.message)));
    window.addEventListener("pagehide", () => stop(pc));
  }
})();
