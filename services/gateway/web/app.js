// Parley's web client: one page, no build step, no framework.
//
// It speaks the gateway's session protocol over the WebSocket at /ws (same
// origin), as protobuf's JSON mapping of ClientFrame / ServerFrame
// (protos/parley/v1/gateway.proto). Proto3 JSON leaves out default values:
// `offerer` is absent when false, `commonInterests` when empty, and so on.
//
// Test hooks (read-only, for the end-to-end tests and for debugging):
//   window.parley.state      "offline" | "connecting" | "idle" | "starting" |
//                            "waiting" | "connected" | "ended" | "banned"
//   window.parley.pc         the current RTCPeerConnection, or null
//   window.parley.log        the lines shown in the chat log, e.g. "You: hi"
//   window.parley.sessionId  the gateway's session id ("" before welcome)
//   window.parley.pow        the last proof of work: {challenge, bits, nonce, tries, ms, impl}
//   window.parley.solvePow(challenge, bits, impl?)  runs the worker; a promise of {nonce, ...}
//   window.parley.snapshotsSent  video stills sent to moderation in this page
//   window.parley.sendSnapshot()  send one now instead of waiting for the timer
// Stable element ids: #start #stop #send #text #log #typing #mode-text
// #mode-video #interests #interests-only #age-band #language #report
// #report-category #report-comment #block #settings #status #banned
// #local-video #remote-video.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    status: $("status"), banned: $("banned"), setup: $("setup"), chat: $("chat"),
    modeText: $("mode-text"), modeVideo: $("mode-video"), interests: $("interests"),
    interestsOnly: $("interests-only"), ageBand: $("age-band"), language: $("language"),
    start: $("start"), setupError: $("setup-error"),
    videos: $("videos"), remoteVideo: $("remote-video"), localVideo: $("local-video"),
    videoStatus: $("video-status"),
    log: $("log"), typing: $("typing"), stop: $("stop"), text: $("text"), send: $("send"),
    reportCategory: $("report-category"), reportComment: $("report-comment"),
    report: $("report"), block: $("block"), settings: $("settings"),
  };

  const CLIENT = "parley-web/0.1";
  const TYPING_IDLE_MS = 3000;
  const MAX_TEXT_BYTES = 2000;
  const MAX_INTERESTS = 10;
  const MAX_INTEREST_CHARS = 32;
  const STORE_TOKEN = "parley.deviceToken";
  const STORE_SETTINGS = "parley.settings";
  const LANGUAGES = [
    ["en", "English"], ["es", "Español"], ["pt", "Português"], ["fr", "Français"],
    ["de", "Deutsch"], ["it", "Italiano"], ["nl", "Nederlands"], ["pl", "Polski"],
    ["ru", "Русский"], ["uk", "Українська"], ["tr", "Türkçe"], ["ar", "العربية"],
    ["hi", "हिन्दी"], ["id", "Bahasa Indonesia"], ["vi", "Tiếng Việt"], ["th", "ไทย"],
    ["ja", "日本語"], ["ko", "한국어"], ["zh", "中文"], ["sv", "Svenska"],
  ];

  const s = {
    state: "offline",
    ws: null,
    welcomed: null,          // promise: resolves on welcome, rejects if the socket ends first
    sessionId: "",
    pow: Promise.resolve(""),  // promise of the nonce for this session's challenge
    powChallenge: null,      // {challenge, bits} from welcome
    powInfo: null,
    lastJoin: null,          // the join the gateway accepted in this session (next reuses it)
    pending: null,           // a join/next sent and not yet answered: {kind, join, retried, cancelled}
    startToken: 0,           // bumped to cancel a start that has not sent its frame yet
    started: false,          // the chat view has been opened
    setupOpen: true,
    conversation: null,      // the `connected` frame of the current conversation
    hadStranger: false,      // report/block have someone to act on
    confirmStop: false,      // the Stop button says "Really?"
    typingSent: false,
    typingTimer: 0,
    pc: null,
    pcChain: Promise.resolve(),
    pendingCandidates: [],
    snapshotTimer: 0,
    snapshotsSent: 0,
    camera: null,            // promise of the local MediaStream (or null when refused)
    localStream: null,
    log: [],
  };

  // ------------------------------------------------------------ small helpers

  function store(key, value) {
    try {
      if (value === undefined) return localStorage.getItem(key);
      localStorage.setItem(key, value);
    } catch (_) { /* storage disabled: the device token lasts this page only */ }
    return null;
  }

  function send(frame) {
    if (s.ws && s.ws.readyState === WebSocket.OPEN) {
      s.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function setState(state) {
    s.state = state;
    if (state !== "waiting" && state !== "connected" && state !== "starting") s.confirmStop = false;
    render();
  }

  function line(text, kind = "system") {
    const item = document.createElement("li");
    item.className = kind;
    if (kind === "you" || kind === "stranger") {
      const who = document.createElement("strong");
      who.textContent = kind === "you" ? "You:" : "Stranger:";
      item.append(who, " ", text);
      s.log.push(`${kind === "you" ? "You" : "Stranger"}: ${text}`);
    } else {
      item.textContent = text;
      s.log.push(text);
    }
    el.log.append(item);
    el.log.scrollTop = el.log.scrollHeight;
  }

  // A problem for the user: in the chat log once the chat is open, under
  // the Start button before that.
  function notice(text) {
    if (s.started) line(text, "error");
    else el.setupError.textContent = text;
  }

  function clearLog() {
    el.log.replaceChildren();
    s.log.length = 0;
  }

  function joinList(words) {
    if (words.length <= 1) return words.join("");
    return `${words.slice(0, -1).join(", ")} and ${words[words.length - 1]}`;
  }

  function parseInterests(raw) {
    const seen = [];
    for (const word of raw.split(/[,\s]+/)) {
      const tag = word.replace(/^#+/, "").toLowerCase().slice(0, MAX_INTEREST_CHARS);
      if (tag && !seen.includes(tag)) seen.push(tag);
    }
    return seen.slice(0, MAX_INTERESTS);
  }

  function mode() {
    return el.modeVideo.checked ? "MODE_VIDEO" : "MODE_TEXT";
  }

  // ------------------------------------------------------------ rendering

  const STATUS = {
    offline: "Not connected", connecting: "Connecting…", idle: "Ready",
    starting: "Getting ready…", waiting: "Looking for a stranger…",
    connected: "Chatting with a stranger", ended: "Conversation over", banned: "Banned",
  };

  function render() {
    const st = s.state;
    const busy = st === "starting" || st === "waiting" || st === "connected";
    const banned = st === "banned";
    el.status.textContent = STATUS[st] || st;
    document.body.dataset.state = st;
    el.setup.hidden = !s.setupOpen || busy;
    el.chat.hidden = !s.started;
    el.start.disabled = banned || busy;
    el.stop.textContent = s.confirmStop ? "Really?" : busy ? "Stop" : "New";
    el.stop.classList.toggle("confirm", s.confirmStop);
    el.stop.disabled = banned;
    el.text.disabled = st !== "connected";
    el.send.disabled = st !== "connected";
    const canReport = s.hadStranger && (st === "connected" || st === "ended");
    el.reportCategory.disabled = !canReport;
    el.reportComment.disabled = !canReport;
    el.report.disabled = !canReport;
    el.block.disabled = !canReport;
    el.settings.hidden = busy || banned || s.setupOpen;
    el.videos.hidden = !(s.started && mode() === "MODE_VIDEO") || banned;
    for (const input of el.setup.querySelectorAll("input, select, button")) {
      if (input !== el.start) input.disabled = banned;
    }
  }

  // ------------------------------------------------------------ the session

  function connect() {
    if (s.ws && s.ws.readyState <= WebSocket.OPEN) return s.welcomed;
    // Beside the page (usually /ws), so a proxy may serve it under a prefix.
    const url = new URL("ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url.href);
    s.ws = ws;
    s.sessionId = "";
    s.powInfo = null;
    s.lastJoin = null;
    s.pending = null;
    s.hadStranger = false;
    let welcome, fail;
    s.welcomed = new Promise((resolve, reject) => { welcome = resolve; fail = reject; });
    s.welcomed.catch(() => {});
    s.welcomed.resolve = welcome;
    s.welcomed.reject = fail;
    if (s.state !== "starting") setState("connecting");

    ws.onopen = () => {
      const hello = {client: CLIENT};
      const token = store(STORE_TOKEN);
      if (token) hello.deviceToken = token;
      send({hello});
    };
    ws.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (_) { return; }
      if (s.ws === ws && frame && typeof frame === "object") handle(frame);
    };
    ws.onclose = () => {
      if (s.ws !== ws) return;
      s.ws = null;
      s.welcomed.reject(new Error("connection closed"));
      if (s.state === "banned") return;
      const wasBusy = ["starting", "waiting", "connected"].includes(s.state);
      leaveConversation();
      s.pending = null;
      setState("offline");
      if (wasBusy || s.started) notice("Disconnected from the server. Press New to try again.");
    };
    return s.welcomed;
  }

  function handle(frame) {
    const kind = Object.keys(frame)[0];
    const body = frame[kind] || {};
    switch (kind) {
      case "welcome": return onWelcome(body);
      case "waiting": return onWaiting();
      case "connected": return onConnected(body);
      case "message": return onMessage(body);
      case "typing": return onTyping(body);
      case "strangerDisconnected": return onStrangerLeft(body);
      case "signal": return onSignal(body);
      case "ack": return onAck(body);
      case "notice": return onNotice(body);
      case "error": return onError(body);
      case "banned": return onBanned(body);
      default: return undefined;  // a newer server's frame: ignored
    }
  }

  function onWelcome(welcome) {
    s.sessionId = welcome.sessionId || "";
    if (welcome.deviceToken) store(STORE_TOKEN, welcome.deviceToken);
    const proof = welcome.proofOfWork;
    if (proof && proof.challenge) {
      // Solved now, in the background, while the user picks interests.
      s.powChallenge = {challenge: proof.challenge, bits: proof.difficultyBits || 0};
      s.pow = solveChallenge();
    } else {
      s.powChallenge = null;
      s.pow = Promise.resolve("");
    }
    if (s.state === "connecting" || s.state === "offline") setState(s.started ? "ended" : "idle");
    s.welcomed.resolve(welcome);
  }

  function solveChallenge(impl) {
    const {challenge, bits} = s.powChallenge;
    return solvePow(challenge, bits, impl).then((found) => {
      s.powInfo = {challenge, bits, ...found};
      return found.nonce;
    }, (error) => {
      console.warn("proof of work failed", error);
      return "";  // the gateway will ask again (CODE_PROOF_REQUIRED)
    });
  }

  function solvePow(challenge, bits, impl) {
    return new Promise((resolve, reject) => {
      const worker = new Worker("pow-worker.js");
      worker.onmessage = (event) => {
        worker.terminate();
        if (event.data.error) reject(new Error(event.data.error));
        else resolve(event.data);
      };
      worker.onerror = (event) => {
        worker.terminate();
        reject(new Error(event.message || "proof-of-work worker failed"));
      };
      worker.postMessage({challenge, bits, impl});
    });
  }

  function readJoin() {
    const ageBand = el.ageBand.value;
    if (!ageBand) {
      el.setupError.textContent = "Tell us your age first: minors only ever meet minors.";
      s.setupOpen = true;
      render();
      el.ageBand.focus();
      return null;
    }
    el.setupError.textContent = "";
    const interests = parseInterests(el.interests.value);
    const join = {mode: mode(), ageBand, language: el.language.value || "en"};
    if (interests.length) join.interests = interests;
    if (interests.length && el.interestsOnly.checked) join.interestsOnly = true;
    store(STORE_SETTINGS, JSON.stringify({
      mode: join.mode, ageBand, language: join.language,
      interests: el.interests.value, interestsOnly: el.interestsOnly.checked,
    }));
    return join;
  }

  function sameJoin(a, b) {
    return JSON.stringify(a) === JSON.stringify(b);
  }

  // Start (the first time, or with changed settings) and New.
  async function startLooking() {
    const join = readJoin();
    if (!join) return;
    const token = ++s.startToken;
    s.started = true;
    s.setupOpen = false;
    clearLog();
    hideTyping();
    if (join.mode === "MODE_VIDEO") startCamera();
    else stopCamera();
    setState("starting");
    const ready = connect();
    try {
      await ready;
    } catch (_) {
      return;  // the socket ended; onclose said so
    }
    if (token !== s.startToken) return;  // stopped meanwhile
    if (s.lastJoin && sameJoin(s.lastJoin, join)) {
      s.pending = {kind: "next", join, retried: false, cancelled: false};
      send({next: {}});
      return;
    }
    if (s.powChallenge && !s.powInfo) line("Getting ready…");
    const nonce = await s.pow;
    if (token !== s.startToken) return;
    s.pending = {kind: "join", join, retried: false, cancelled: false};
    sendJoin(join, nonce);
  }

  function sendJoin(join, nonce) {
    send({join: nonce ? {...join, proofOfWork: nonce} : join});
  }

  function onWaiting() {
    const pending = s.pending;
    if (!pending) return;
    s.pending = null;
    if (pending.cancelled) {
      send({stop: {}});  // stopped before the gateway answered: stop waiting now
      return;
    }
    s.lastJoin = pending.join;
    setState("waiting");
    line("Looking for someone you can chat with...");
  }

  function onConnected(connected) {
    if (s.state !== "waiting" && s.state !== "starting") return;  // stopped meanwhile
    s.pending = null;
    s.conversation = connected;
    s.hadStranger = true;
    setState("connected");
    line("You're now chatting with a random stranger. Say hi!");
    const common = connected.commonInterests || [];
    if (common.length) line(`You both like ${joinList(common)}.`);
    else if (connected.randomFallback && s.lastJoin && s.lastJoin.interests) {
      line("Nobody shares your interests right now, so this stranger is random.");
    }
    if (s.lastJoin && s.lastJoin.mode === "MODE_VIDEO") {
      startSnapshots();
      try {
        startPeer(connected);
      } catch (error) {  // no WebRTC in this browser: text still works
        console.warn("video unavailable", error);
        videoStatus("This browser cannot do video here; text chat still works.");
      }
    }
    el.text.focus();
  }

  function onMessage(message) {
    if (s.state !== "connected") return;
    hideTyping();
    line(message.text || "", "stranger");
  }

  function onTyping(typing) {
    if (s.state !== "connected") return;
    el.typing.hidden = !typing.typing;
  }

  function hideTyping() {
    el.typing.hidden = true;
  }

  function onStrangerLeft(left) {
    if (s.state !== "connected") return;
    if (left.matchId && s.conversation && s.conversation.matchId && left.matchId !== s.conversation.matchId) return;
    leaveConversation();
    setState("ended");
    line("Stranger has disconnected.");
  }

  function leaveConversation() {
    stopSnapshots();
    closePeer();
    hideTyping();
    clearTimeout(s.typingTimer);
    s.typingSent = false;
    s.conversation = null;
  }

  // Moderation warned us, or ended our conversation (we may start again).
  function onNotice(notice) {
    if (notice.conversationEnded) {
      if (s.state !== "connected") return;
      leaveConversation();
      setState("ended");
      line(`Our moderators ended this conversation: ${notice.message || "it broke the rules"}`);
    } else {
      line(`Warning from our moderators: ${notice.message || "please keep to the rules"}`);
    }
  }

  function onAck(ack) {
    if (ack.what === "report") {
      line("Thanks: your report was sent to our moderators. You won't be paired with this stranger again.");
      el.reportCategory.value = "";
      el.reportComment.value = "";
    } else if (ack.what === "block") {
      line("Blocked: you won't be paired with this stranger again.");
    }
  }

  function onError(error) {
    const code = error.code || "CODE_UNSPECIFIED";
    const pending = s.pending;
    if (pending) {
      // The answer to our join or next (nothing else is in flight meanwhile).
      if (code === "CODE_PROOF_REQUIRED" && pending.kind === "join" && !pending.retried
          && s.powChallenge && !pending.cancelled) {
        pending.retried = true;  // solve again (with the other hash code) and retry once
        const impl = s.powInfo && s.powInfo.impl === "subtle" ? "js" : "subtle";
        solveChallenge(impl).then((nonce) => {
          if (s.pending === pending) sendJoin(pending.join, nonce);
        });
        return;
      }
      s.pending = null;
      if (pending.cancelled) return;
      setState("ended");
    }
    if (code === "CODE_RATE_LIMITED") {
      const wait = Number(error.retryAfterMs || 0) / 1000;
      notice(wait > 0 ? `You're going too fast. Try again in ${wait.toFixed(1)} s.`
        : "You're going too fast. Try again in a moment.");
    } else if (code === "CODE_PROOF_REQUIRED") {
      notice("The server could not check this browser. Press New to try again.");
    } else if (code === "CODE_UNAVAILABLE") {
      notice("The service is busy right now. Try again shortly.");
    } else {
      notice(`Error: ${error.message || code}`);
    }
  }

  function onBanned(banned) {
    s.pending = null;
    leaveConversation();
    stopCamera();
    setState("banned");
    const expires = Number(banned.expiresAtUnixMs || 0);
    const category = (banned.category || "").replace(/^CATEGORY_/, "").replace(/_/g, " ").toLowerCase();
    const parts = ["You have been banned from Parley"];
    if (category && category !== "unspecified") parts.push(` for ${category}`);
    parts.push(banned.reason ? `: ${banned.reason}.` : ".");
    parts.push(expires ? ` The ban ends ${new Date(expires).toLocaleString()}.` : " The ban is permanent.");
    el.banned.textContent = parts.join("");
    el.banned.hidden = false;
    if (s.started) line(el.banned.textContent, "error");
    offerAppeal(banned);
    s.welcomed.reject(new Error("banned"));
    render();
  }

  // A ban may be appealed once, within its window: POST /appeal (the same
  // AppealRequest as the gRPC API, in protobuf JSON).
  function offerAppeal(banned) {
    const until = Number(banned.appealableUntilUnixMs || 0);
    const form = $("appeal");
    if (!banned.banId || until <= Date.now()) return;
    form.hidden = false;
    form.onsubmit = async (event) => {
      event.preventDefault();
      const statement = $("appeal-statement").value.trim();
      const result = $("appeal-result");
      if (!statement) return;
      $("appeal-send").disabled = true;
      try {
        const reply = await fetch("/appeal", {
          method: "POST", headers: {"Content-Type": "application/json"},
          body: JSON.stringify({deviceToken: store(STORE_TOKEN) || "", banId: banned.banId, statement}),
        });
        const body = await reply.json();
        if (reply.ok) {
          result.textContent = "Your appeal was sent. A moderator will review the ban.";
          $("appeal-statement").disabled = true;
          return;
        }
        result.textContent = `The appeal was not sent: ${(body.error && body.error.message) || reply.status}`;
      } catch (error) {
        result.textContent = "The appeal could not be sent; try again later.";
      }
      $("appeal-send").disabled = false;
    };
  }

  // ------------------------------------------------------------ user actions

  function onStopButton() {
    if (s.state === "banned") return;
    if (s.state === "starting" || s.state === "waiting" || s.state === "connected") {
      if (!s.confirmStop) {
        s.confirmStop = true;
        render();
        return;
      }
      s.confirmStop = false;
      stop();
      return;
    }
    startLooking();
  }

  function stop() {
    if (s.state === "starting") {
      s.startToken++;  // a join not yet sent is never sent
      if (s.pending) s.pending.cancelled = true;  // one sent: stop as soon as it is answered
      setState("ended");
      line("You have stopped looking.");
    } else if (s.state === "waiting") {
      send({stop: {}});
      setState("ended");
      line("You have stopped looking.");
    } else if (s.state === "connected") {
      send({stop: {}});
      leaveConversation();
      setState("ended");
      line("You have disconnected.");
    }
  }

  function sendText() {
    const text = el.text.value;
    if (s.state !== "connected" || !text.trim()) return;
    if (new TextEncoder().encode(text).length > MAX_TEXT_BYTES) {
      notice(`That message is too long (at most ${MAX_TEXT_BYTES} bytes).`);
      return;
    }
    send({text: {text}});
    line(text, "you");
    el.text.value = "";
    setTyping(false);
  }

  // Only changes of state go out: true on the first keystroke, false after
  // a pause, on send, or when the box is emptied.
  function setTyping(typing) {
    clearTimeout(s.typingTimer);
    if (typing) s.typingTimer = setTimeout(() => setTyping(false), TYPING_IDLE_MS);
    if (typing === s.typingSent || s.state !== "connected") return;
    s.typingSent = typing;
    send({typing: {typing}});
  }

  function report() {
    const category = el.reportCategory.value;
    if (!category) {
      notice("Choose what you are reporting first.");
      el.reportCategory.focus();
      return;
    }
    const frame = {category};
    const comment = el.reportComment.value.trim();
    if (comment) frame.comment = comment;
    send({report: frame});
  }

  function block() {
    send({block: {}});
    if (s.state === "connected") {
      leaveConversation();
      setState("ended");
      line("You have disconnected and blocked the stranger.");
    }
  }

  // ------------------------------------------------------------ video

  function startCamera() {
    if (s.camera) return s.camera;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      notice("This browser gives no access to a camera here (it needs https).");
      return Promise.resolve(null);
    }
    const camera = navigator.mediaDevices.getUserMedia({
      video: {width: {ideal: 640}, height: {ideal: 480}, facingMode: "user"}, audio: true,
    }).then((stream) => {
      if (s.camera !== camera) {  // switched back to text meanwhile
        stream.getTracks().forEach((track) => track.stop());
        return null;
      }
      s.localStream = stream;
      el.localVideo.srcObject = stream;
      return stream;
    }, (error) => {
      if (s.camera === camera) s.camera = null;  // ask again next time
      notice(`No camera or microphone (${error.name || error}): the stranger will not see or hear you.`);
      return null;
    });
    s.camera = camera;
    return camera;
  }

  function stopCamera() {
    s.camera = null;
    if (s.localStream) s.localStream.getTracks().forEach((track) => track.stop());
    s.localStream = null;
    el.localVideo.srcObject = null;
  }

  // Every few seconds a small still of our own camera goes to moderation
  // (gateway.proto, Snapshot): what keeps video safe without a person
  // watching every stream.
  const SNAPSHOT_EVERY_MS = 5000;
  const SNAPSHOT_WIDTH = 320;
  const SNAPSHOT_HEIGHT = 240;

  function startSnapshots() {
    stopSnapshots();
    s.snapshotTimer = setInterval(sendSnapshot, SNAPSHOT_EVERY_MS);
  }

  function stopSnapshots() {
    clearInterval(s.snapshotTimer);
    s.snapshotTimer = 0;
  }

  function sendSnapshot() {
    const video = el.localVideo;
    if (s.state !== "connected" || !s.localStream || video.readyState < 2) return;
    const canvas = document.createElement("canvas");
    canvas.width = SNAPSHOT_WIDTH;
    canvas.height = SNAPSHOT_HEIGHT;
    canvas.getContext("2d").drawImage(video, 0, 0, SNAPSHOT_WIDTH, SNAPSHOT_HEIGHT);
    canvas.toBlob(async (blob) => {
      if (!blob || s.state !== "connected") return;
      const bytes = new Uint8Array(await blob.arrayBuffer());
      let binary = "";
      for (let i = 0; i < bytes.length; i += 0x8000) {
        binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
      }
      s.snapshotsSent += 1;
      send({snapshot: {jpeg: btoa(binary)}});  // protobuf JSON: bytes as base64
    }, "image/jpeg", 0.6);
  }

  function videoStatus(text) {
    el.videoStatus.textContent = text;
  }

  function startPeer(connected) {
    closePeer();
    const ice = connected.ice || {};
    const iceServers = (ice.servers || []).map((server) => ({
      urls: server.urls || [], username: server.username || "", credential: server.credential || "",
    }));
    if (!iceServers.length) videoStatus("No video relay is available right now; text chat still works.");
    else videoStatus("Connecting video…");
    const pc = new RTCPeerConnection({iceServers, iceTransportPolicy: ice.transportPolicy || "relay"});
    s.pc = pc;
    s.pendingCandidates = [];
    const remote = new MediaStream();
    el.remoteVideo.srcObject = remote;
    pc.onicecandidate = (event) => {
      if (event.candidate && s.pc === pc) {
        send({signal: {iceCandidateJson: JSON.stringify(event.candidate.toJSON())}});
      }
    };
    pc.ontrack = (event) => {
      if (s.pc === pc) remote.addTrack(event.track);
    };
    pc.onconnectionstatechange = () => {
      if (s.pc !== pc) return;
      const state = pc.connectionState;
      if (state === "connected") videoStatus("");
      else if (state === "failed") videoStatus("The video could not connect; text chat still works.");
      else if (state === "disconnected") videoStatus("Video interrupted…");
    };
    // Every step on this connection runs in order, after the camera is ready:
    // an offer (or candidates) that arrive meanwhile wait their turn.
    s.pcChain = (async () => {
      const stream = await (s.camera || Promise.resolve(null));
      if (s.pc !== pc) return;
      if (stream) stream.getTracks().forEach((track) => pc.addTrack(track, stream));
      else ["video", "audio"].forEach((kind) => pc.addTransceiver(kind, {direction: "recvonly"}));
      if (connected.offerer) {  // exactly one side offers
        await pc.setLocalDescription(await pc.createOffer());
        send({signal: {offerSdp: pc.localDescription.sdp}});
      }
    })().catch((error) => peerFailed(pc, error));
  }

  function onSignal(signal) {
    const pc = s.pc;
    if (s.state !== "connected" || !pc) return;
    s.pcChain = s.pcChain.then(async () => {
      if (s.pc !== pc) return;
      if (signal.offerSdp) {
        await pc.setRemoteDescription({type: "offer", sdp: signal.offerSdp});
        await addQueuedCandidates(pc);
        await pc.setLocalDescription(await pc.createAnswer());
        send({signal: {answerSdp: pc.localDescription.sdp}});
      } else if (signal.answerSdp) {
        await pc.setRemoteDescription({type: "answer", sdp: signal.answerSdp});
        await addQueuedCandidates(pc);
      } else if (signal.iceCandidateJson) {
        let candidate;
        try { candidate = JSON.parse(signal.iceCandidateJson); } catch (_) { return; }
        // Candidates that come before the stranger's description wait for it.
        if (pc.remoteDescription) await addCandidate(pc, candidate);
        else s.pendingCandidates.push(candidate);
      }
    }).catch((error) => peerFailed(pc, error));
  }

  async function addQueuedCandidates(pc) {
    const queued = s.pendingCandidates;
    s.pendingCandidates = [];
    for (const candidate of queued) await addCandidate(pc, candidate);
  }

  async function addCandidate(pc, candidate) {
    try {
      await pc.addIceCandidate(candidate);
    } catch (error) {
      console.warn("ICE candidate refused", error);  // one bad candidate is not the end
    }
  }

  function peerFailed(pc, error) {
    if (s.pc !== pc) return;
    console.warn("video failed", error);
    videoStatus("The video could not start; text chat still works.");
  }

  function closePeer() {
    const pc = s.pc;
    s.pc = null;
    s.pendingCandidates = [];
    if (pc) {
      pc.onicecandidate = pc.ontrack = pc.onconnectionstatechange = null;
      pc.close();
    }
    el.remoteVideo.srcObject = null;
    videoStatus("");
  }

  // ------------------------------------------------------------ wiring

  function restoreSettings() {
    const browserLanguage = (navigator.language || "en").slice(0, 2).toLowerCase();
    const languages = LANGUAGES.slice();
    if (/^[a-z]{2}$/.test(browserLanguage) && !languages.some(([code]) => code === browserLanguage)) {
      languages.push([browserLanguage, browserLanguage]);
    }
    for (const [code, name] of languages) el.language.append(new Option(name, code));
    el.language.value = languages.some(([code]) => code === browserLanguage) ? browserLanguage : "en";
    let saved = {};
    try { saved = JSON.parse(store(STORE_SETTINGS) || "{}") || {}; } catch (_) { saved = {}; }
    if (saved.mode === "MODE_VIDEO") el.modeVideo.checked = true;
    if (saved.ageBand === "AGE_BAND_ADULT" || saved.ageBand === "AGE_BAND_MINOR") el.ageBand.value = saved.ageBand;
    if (saved.language && languages.some(([code]) => code === saved.language)) el.language.value = saved.language;
    if (typeof saved.interests === "string") el.interests.value = saved.interests;
    el.interestsOnly.checked = !!saved.interestsOnly;
  }

  function wire() {
    el.start.addEventListener("click", () => startLooking());
    el.stop.addEventListener("click", onStopButton);
    el.send.addEventListener("click", () => { sendText(); el.text.focus(); });
    el.text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        sendText();
      }
    });
    el.text.addEventListener("input", () => setTyping(el.text.value.length > 0));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && s.started && !el.stop.disabled) {
        event.preventDefault();
        onStopButton();
      }
    });
    for (const radio of [el.modeText, el.modeVideo]) {
      radio.addEventListener("change", () => {
        // Ask for the camera as soon as Video is chosen, so the prompt does
        // not hold up the first conversation.
        if (mode() === "MODE_VIDEO") startCamera();
        else if (!["starting", "waiting", "connected"].includes(s.state)) stopCamera();
        render();
      });
    }
    el.ageBand.addEventListener("change", () => { el.setupError.textContent = ""; });
    el.report.addEventListener("click", report);
    el.block.addEventListener("click", block);
    el.settings.addEventListener("click", () => {
      s.setupOpen = true;
      render();
      el.interests.focus();
    });
  }

  window.parley = Object.freeze({
    get state() { return s.state; },
    get pc() { return s.pc; },
    get log() { return s.log; },
    get sessionId() { return s.sessionId; },
    get pow() { return s.powInfo; },
    get snapshotsSent() { return s.snapshotsSent; },
    solvePow,
    sendSnapshot,
  });

  restoreSettings();
  wire();
  render();
  if (mode() === "MODE_VIDEO") startCamera();
  connect();
})();
