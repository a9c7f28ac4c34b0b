// The softphone of the Calls page: a WebRTC call to the box, which bridges
// it to SIP. Signalling: server-sent events from /api/v1/calls/line (the
// line is open while the page is), POSTs to dial, answer and hang up.
// window.cbPhone shows the state (for people debugging, and for tests).
// The same file runs a conference room's page (window.cbRoom) and the
// Calls page's form that makes rooms. The texts come translated in data-
// attributes of #phone and #room, with %s for each value.
(() => {
  const $ = (id) => document.getElementById(id);
  async function post(path, body, csrf) {
    const headers = { 'Content-Type': 'application/json' };
    if (csrf) headers['X-CSRF-Token'] = csrf;
    const r = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body) });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(j.error || 'HTTP ' + r.status);
    return j;
  }
  function gathered(p) {
    return new Promise((res) => {
      if (p.iceGatheringState === 'complete') return res();
      const t = setTimeout(res, 3000);
      p.onicegatheringstatechange = () => { if (p.iceGatheringState === 'complete') { clearTimeout(t); res(); } };
    });
  }
  // say returns the text data-<key> of el with args in place of its %s.
  function say(el, key, ...args) {
    return (el.dataset[key] || key).replace(/%s/g, () => String(args.shift()));
  }
  phone();
  room();
  roomForm();

function phone() {
  const root = $('phone');
  if (!root) return;
  const csrf = root.dataset.csrf;
  const status = $('phone-status'), audio = $('phone-audio'), to = $('phone-to');
  const bCall = $('phone-call'), bAnswer = $('phone-answer'), bHangup = $('phone-hangup'), bMute = $('phone-mute');
  const st = (window.cbPhone = { state: 'connecting', ready: false, answered: 0, ended: 0, events: [], pc: null });
  let pc = null, stream = null, call = null, incoming = null;

  const set = (s) => { status.textContent = s; st.state = s; };
  async function offer() {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    pc = st.pc = new RTCPeerConnection({ iceServers: [] });
    stream.getTracks().forEach((t) => pc.addTrack(t, stream));
    pc.ontrack = (e) => { audio.srcObject = e.streams[0] || new MediaStream([e.track]); };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    return pc.localDescription.sdp;
  }
  function reset() {
    if (pc) pc.close();
    if (stream) stream.getTracks().forEach((t) => t.stop());
    pc = st.pc = null; stream = null; call = null; incoming = null;
    bAnswer.hidden = true; bHangup.disabled = true; bCall.disabled = false; bMute.disabled = true; bMute.textContent = say(root, 'mute');
  }
  bCall.onclick = async () => {
    if (!/^[0-9]{2,15}$/.test(to.value)) { set(say(root, 'digits')); return; }
    bCall.disabled = true;
    set(say(root, 'calling', to.value));
    try {
      const r = await post('/api/v1/calls/dial', { to: to.value, offer: await offer() }, csrf);
      call = r.call;
      await pc.setRemoteDescription({ type: 'answer', sdp: r.answer });
      bHangup.disabled = false; bMute.disabled = false;
    } catch (e) { set(say(root, 'callFailed', e.message)); reset(); }
  };
  bAnswer.onclick = async () => {
    if (!incoming) return;
    call = incoming; incoming = null; bAnswer.hidden = true;
    try {
      const r = await post('/api/v1/calls/answer', { call, offer: await offer() }, csrf);
      await pc.setRemoteDescription({ type: 'answer', sdp: r.answer });
      bMute.disabled = false;
    } catch (e) { set(say(root, 'answerFailed', e.message)); reset(); }
  };
  bHangup.onclick = async () => {
    const c = call || incoming;
    if (c) { try { await post('/api/v1/calls/hangup', { call: c }, csrf); } catch (e) { reset(); } }
  };
  bMute.onclick = () => {
    const t = stream && stream.getAudioTracks()[0];
    if (!t) return;
    t.enabled = !t.enabled;
    bMute.textContent = say(root, t.enabled ? 'mute' : 'unmute');
  };
  const es = new EventSource('/api/v1/calls/line');
  es.addEventListener('line', (e) => { st.ready = true; set(say(root, 'ready', JSON.parse(e.data).extension)); });
  es.onmessage = (e) => {
    const ev = JSON.parse(e.data);
    st.events.push(ev);
    switch (ev.type) {
      case 'incoming': incoming = ev.call; set(say(root, 'incoming', ev.peer)); bAnswer.hidden = false; bHangup.disabled = false; break;
      case 'ringing': set(say(root, 'ringing', ev.peer)); break;
      case 'answered': st.answered++; set(say(root, 'inCall', ev.peer)); bHangup.disabled = false; break;
      case 'ended': st.ended++; set(say(root, 'ended', ev.reason)); reset(); break;
    }
  };
  es.onerror = () => { st.ready = false; set(say(root, 'lost')); };
}

// room joins a conference room: the microphone (and the camera, when
// chosen and present) up, receive-only transceivers for the others' voices
// and pictures (the box fills them as they join). A picture shows while
// its receiver decodes frames (a track's mute state is not reliable for
// that: Chrome leaves some receive-only tracks muted while they play).
function room() {
  const root = $('room');
  if (!root) return;
  const token = root.dataset.room, slots = +root.dataset.slots;
  const status = $('room-status'), bJoin = $('room-join'), bLeave = $('room-leave'), box = $('room-audio'), grid = $('room-video');
  const st = (window.cbRoom = { joined: false, id: null, pc: null, state: '' });
  const set = (s) => { status.textContent = s; st.state = s; };
  let pc = null, stream = null;
  function reset() {
    if (pc) pc.close();
    if (stream) stream.getTracks().forEach((t) => t.stop());
    pc = st.pc = null; stream = null; st.joined = false; st.id = null;
    box.replaceChildren(); grid.replaceChildren(); bJoin.disabled = false; bLeave.disabled = true;
    clearInterval(watch); watch = null;
  }
  let watch = null;
  function picture(track, self) {
    const v = document.createElement('video');
    v.autoplay = true; v.muted = true; v.playsInline = true; v.srcObject = new MediaStream([track]);
    if (self) v.className = 'self';
    else { v.hidden = true; v.last = 0; v.frames = 0; v.track = track.id; }
    grid.appendChild(v);
    if (!watch) watch = setInterval(showPlaying, 1000);
  }
  async function showPlaying() {
    if (!pc) return;
    const frames = {};
    (await pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') frames[r.trackIdentifier] = r.framesDecoded || 0; });
    const now = Date.now();
    grid.querySelectorAll('video:not(.self)').forEach((v) => {
      if ((frames[v.track] || 0) > v.frames) { v.frames = frames[v.track]; v.last = now; }
      v.hidden = now - v.last > 3000;
    });
  }
  async function media() {
    if ($('room-camera').checked) {
      try { return await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } }); } catch (e) { /* no camera: audio only */ }
    }
    return navigator.mediaDevices.getUserMedia({ audio: true });
  }
  bJoin.onclick = async () => {
    bJoin.disabled = true;
    set(say(root, 'joining'));
    try {
      stream = await media();
      pc = st.pc = new RTCPeerConnection({ iceServers: [] });
      stream.getTracks().forEach((t) => pc.addTrack(t, stream));
      stream.getVideoTracks().forEach((t) => picture(t, true));
      for (let i = 0; i < slots; i++) pc.addTransceiver('audio', { direction: 'recvonly' });
      for (let i = 0; i < slots; i++) pc.addTransceiver('video', { direction: 'recvonly' });
      pc.ontrack = (e) => {
        if (e.track.kind === 'video') { picture(e.track, false); return; }
        const a = document.createElement('audio'); a.autoplay = true; a.srcObject = new MediaStream([e.track]); box.appendChild(a);
      };
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const r = await post('/api/v1/rooms/' + token + '/join', { name: $('room-name').value, offer: pc.localDescription.sdp });
      st.id = r.id;
      await pc.setRemoteDescription({ type: 'answer', sdp: r.answer });
      st.joined = true; bLeave.disabled = false;
      set(say(root, 'inRoom'));
    } catch (e) { set(say(root, 'joinFailed', e.message)); reset(); }
  };
  bLeave.onclick = async () => {
    if (st.id) { try { await post('/api/v1/rooms/' + token + '/leave', { id: st.id }); } catch (e) { /* gone already */ } }
    reset(); set(say(root, 'left'));
  };
}

// roomForm makes a room from the Calls page and shows its link.
function roomForm() {
  const f = $('room-new');
  if (!f) return;
  f.onsubmit = async (e) => {
    e.preventDefault();
    try {
      const r = await post('/api/v1/rooms', { title: $('room-title').value }, f.dataset.csrf);
      const a = $('room-link');
      a.href = r.link; a.textContent = location.origin + r.link; a.hidden = false;
    } catch (err) { $('room-link').textContent = err.message; $('room-link').hidden = false; }
  };
}
})();
