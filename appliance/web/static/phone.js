// The softphone of the Calls page: a WebRTC call to the box, which bridges
// it to SIP. Signalling: server-sent events from /api/v1/calls/line (the
// line is open while the page is), POSTs to dial, answer and hang up.
// window.cbPhone shows the state (for people debugging, and for tests).
(() => {
  const root = document.getElementById('phone');
  if (!root) return;
  const csrf = root.dataset.csrf;
  const $ = (id) => document.getElementById(id);
  const status = $('phone-status'), audio = $('phone-audio'), to = $('phone-to');
  const bCall = $('phone-call'), bAnswer = $('phone-answer'), bHangup = $('phone-hangup'), bMute = $('phone-mute');
  const st = (window.cbPhone = { state: 'connecting', ready: false, answered: 0, ended: 0, events: [], pc: null });
  let pc = null, stream = null, call = null, incoming = null;

  const set = (s) => { status.textContent = s; st.state = s; };
  async function post(path, body) {
    const r = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf }, body: JSON.stringify(body) });
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
    bAnswer.hidden = true; bHangup.disabled = true; bCall.disabled = false; bMute.disabled = true; bMute.textContent = 'Mute';
  }
  bCall.onclick = async () => {
    if (!/^[0-9]{2,15}$/.test(to.value)) { set('Type an extension: digits only.'); return; }
    bCall.disabled = true;
    set('Calling ' + to.value + '…');
    try {
      const r = await post('/api/v1/calls/dial', { to: to.value, offer: await offer() });
      call = r.call;
      await pc.setRemoteDescription({ type: 'answer', sdp: r.answer });
      bHangup.disabled = false; bMute.disabled = false;
    } catch (e) { set('The call failed: ' + e.message); reset(); }
  };
  bAnswer.onclick = async () => {
    if (!incoming) return;
    call = incoming; incoming = null; bAnswer.hidden = true;
    try {
      const r = await post('/api/v1/calls/answer', { call, offer: await offer() });
      await pc.setRemoteDescription({ type: 'answer', sdp: r.answer });
      bMute.disabled = false;
    } catch (e) { set('Answering failed: ' + e.message); reset(); }
  };
  bHangup.onclick = async () => {
    const c = call || incoming;
    if (c) { try { await post('/api/v1/calls/hangup', { call: c }); } catch (e) { reset(); } }
  };
  bMute.onclick = () => {
    const t = stream && stream.getAudioTracks()[0];
    if (!t) return;
    t.enabled = !t.enabled;
    bMute.textContent = t.enabled ? 'Mute' : 'Unmute';
  };
  const es = new EventSource('/api/v1/calls/line');
  es.addEventListener('line', (e) => { st.ready = true; set('Ready. Your extension is ' + JSON.parse(e.data).extension + '.'); });
  es.onmessage = (e) => {
    const ev = JSON.parse(e.data);
    st.events.push(ev);
    switch (ev.type) {
      case 'incoming': incoming = ev.call; set('Incoming call from ' + ev.peer); bAnswer.hidden = false; bHangup.disabled = false; break;
      case 'ringing': set('Ringing ' + ev.peer + '…'); break;
      case 'answered': st.answered++; set('In a call with ' + ev.peer); bHangup.disabled = false; break;
      case 'ended': st.ended++; set('Call ended: ' + ev.reason); reset(); break;
    }
  };
  es.onerror = () => { st.ready = false; set('The phone line was lost; reconnecting…'); };
})();
