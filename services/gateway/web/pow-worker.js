// Parley's proof of work, off the page's main thread.
//
// Message in:  {challenge: "..", bits: 16, impl?: "subtle" | "js"}
// Message out: {nonce: "1234", tries: 1235, ms: 210, impl: "subtle"}  or  {error: ".."}
//
// The rule (the gateway's services/gateway/proof_of_work.py): find a nonce, a
// decimal counter from 0 up, such that SHA-256 of the UTF-8 bytes of
// `challenge + ":" + nonce` starts with at least `bits` zero bits.
// crypto.subtle is used where the page is a secure context (https, or
// http on 127.0.0.1/localhost); elsewhere a plain-JS SHA-256 does the work.
"use strict";

function leadingZeroBits(bytes) {
  let bits = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 0) { bits += 8; continue; }
    return bits + Math.clz32(b) - 24;
  }
  return bits;
}

// ---------------------------------------------------------------- plain-JS SHA-256

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const W = new Uint32Array(64);

function sha256(message) {  // Uint8Array -> Uint8Array(32)
  const length = message.length;
  const blocks = Math.ceil((length + 9) / 64);
  const padded = new Uint8Array(blocks * 64);
  padded.set(message);
  padded[length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
  view.setUint32(padded.length - 4, (length << 3) >>> 0);
  let h0 = 0x6a09e667, h1 = 0xbb67ae85, h2 = 0x3c6ef372, h3 = 0xa54ff53a;
  let h4 = 0x510e527f, h5 = 0x9b05688c, h6 = 0x1f83d9ab, h7 = 0x5be0cd19;
  for (let offset = 0; offset < padded.length; offset += 64) {
    for (let t = 0; t < 16; t++) W[t] = view.getUint32(offset + 4 * t);
    for (let t = 16; t < 64; t++) {
      const w15 = W[t - 15], w2 = W[t - 2];
      const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
      const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
      W[t] = (W[t - 16] + s0 + W[t - 7] + s1) | 0;
    }
    let a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7;
    for (let t = 0; t < 64; t++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (h + S1 + ch + K[t] + W[t]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0;
      d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0; h1 = (h1 + b) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0; h5 = (h5 + f) | 0; h6 = (h6 + g) | 0; h7 = (h7 + h) | 0;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  [h0, h1, h2, h3, h4, h5, h6, h7].forEach((word, i) => outView.setUint32(4 * i, word >>> 0));
  return out;
}

// ---------------------------------------------------------------- solvers

const encoder = new TextEncoder();

function solveJs(challenge, bits) {
  for (let counter = 0; ; counter++) {
    const nonce = String(counter);
    if (leadingZeroBits(sha256(encoder.encode(challenge + ":" + nonce))) >= bits) {
      return {nonce, tries: counter + 1};
    }
  }
}

// crypto.subtle answers with a promise per hash: ask for a batch at a time.
const BATCH = 512;

async function solveSubtle(challenge, bits) {
  for (let start = 0; ; start += BATCH) {
    const digests = [];
    for (let counter = start; counter < start + BATCH; counter++) {
      digests.push(crypto.subtle.digest("SHA-256", encoder.encode(challenge + ":" + counter)));
    }
    const results = await Promise.all(digests);
    for (let i = 0; i < results.length; i++) {
      if (leadingZeroBits(new Uint8Array(results[i])) >= bits) {
        return {nonce: String(start + i), tries: start + i + 1};
      }
    }
  }
}

self.onmessage = async (event) => {
  const {challenge, bits} = event.data || {};
  let impl = (event.data && event.data.impl) ||
    (self.crypto && self.crypto.subtle ? "subtle" : "js");
  if (impl === "subtle" && !(self.crypto && self.crypto.subtle)) impl = "js";
  const started = Date.now();
  try {
    if (typeof challenge !== "string" || !(bits >= 0 && bits <= 64)) {
      throw new Error("bad proof-of-work request");
    }
    const found = bits === 0 ? {nonce: "0", tries: 1}
      : impl === "subtle" ? await solveSubtle(challenge, bits) : solveJs(challenge, bits);
    self.postMessage({...found, ms: Date.now() - started, impl});
  } catch (error) {
    self.postMessage({error: String(error && error.message || error)});
  }
};

// Exposed for the page's tests only (a worker has no other use for it).
self.parleySha256 = sha256;
