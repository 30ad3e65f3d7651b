// A Node program that knows nothing of DPoP, using the proxy with the built-in fetch:
// node fetch_through_proxy.mjs "$SHARK_PROXY_URL" MEGABYTES
// It prints one JSON object: what each request got back.
const [base, megabytes = "1"] = process.argv.slice(2);
const out = {};

let reply = await fetch(`${base}/echo?from=node`, {
  headers: { Authorization: "Bearer node-secret", Cookie: "node=1" },
});
out.get = {
  status: reply.status,
  body: await reply.json(),
  setCookie: reply.headers.get("set-cookie"),
  nonce: reply.headers.get("dpop-nonce"),
};

reply = await fetch(`${base}/echo`, {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ ref: "v1.2.3" }),
});
out.post = { status: reply.status, body: await reply.json() };

// A streamed upload (chunked): 64 KiB at a time, never the whole body in memory.
const piece = new Uint8Array(1 << 16).fill(7);
let left = Number(megabytes) * 1024 * 1024;
const body = new ReadableStream({
  pull(controller) {
    if (left <= 0) {
      controller.close();
      return;
    }
    const size = Math.min(left, piece.length);
    left -= size;
    controller.enqueue(piece.subarray(0, size));
  },
});
reply = await fetch(`${base}/upload`, { method: "PUT", body, duplex: "half" });
out.upload = { status: reply.status, body: await reply.json() };

reply = await fetch(`${base}/redirect?to=/echo`, { redirect: "manual" });
out.redirect = { status: reply.status, location: reply.headers.get("location") };

console.log(JSON.stringify(out));
