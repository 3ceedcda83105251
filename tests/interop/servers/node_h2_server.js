// A tiny Node.js HTTP/2 server (http2.createSecureServer, ALPN h2 and
// http/1.1) for the interop suite. Configured by env like node_server.js:
// HINTPOOL_HOST, HINTPOOL_PORT, HINTPOOL_ACCESS_LOG (one line per request:
// client port, requests so far on the session, status, request line),
// HINTPOOL_KEEPALIVE_MS (the session idle timeout, server.setTimeout),
// HINTPOOL_MAX_REQUESTS (after that many streams a session is closed
// gracefully: GOAWAY, the open streams finish), HINTPOOL_TLS_CERT /
// HINTPOOL_TLS_KEY. Signals: SIGUSR2 closes every open session gracefully
// and keeps listening (a server retiring its connections); SIGINT is a
// graceful shutdown (server.close(), every session closed, exit when done);
// SIGTERM exits at once.
"use strict";
const fs = require("fs");
const http2 = require("http2");

const env = process.env;
const accessLog = env.HINTPOOL_ACCESS_LOG;
const maxRequests = Number(env.HINTPOOL_MAX_REQUESTS || 0);
const body = "hello\n";
const sessions = new Set();

function handler(req, res) {
  // HTTP/1.1 (allowHTTP1) requests have no session: count on the socket.
  const holder = req.stream ? req.stream.session : req.socket;
  holder.hintpoolRequests = (holder.hintpoolRequests || 0) + 1;
  const served = holder.hintpoolRequests;
  const port = req.socket.remotePort;
  const line = `${req.method} ${req.url} HTTP/${req.httpVersion}`;
  res.on("finish", () => {
    if (accessLog) {
      fs.appendFileSync(accessLog, `${port} ${served} ${res.statusCode} "${line}"\n`);
    }
  });
  if (req.stream && maxRequests && served >= maxRequests) {
    req.stream.session.close();
  }
  req.resume();
  req.on("end", () => {
    res.writeHead(200, {
      "Content-Type": "text/plain",
      "Content-Length": Buffer.byteLength(body),
    });
    res.end(body);
  });
}

const server = http2.createSecureServer(
  {
    cert: fs.readFileSync(env.HINTPOOL_TLS_CERT),
    key: fs.readFileSync(env.HINTPOOL_TLS_KEY),
    allowHTTP1: true,
  },
  handler,
);
if (env.HINTPOOL_KEEPALIVE_MS) {
  server.setTimeout(Number(env.HINTPOOL_KEEPALIVE_MS));
}
server.on("session", (session) => {
  sessions.add(session);
  session.on("close", () => sessions.delete(session));
});
server.on("error", (err) => {
  console.error(`node h2 server error: ${err.message}`);
  process.exit(1);
});
function closeSessions() {
  for (const session of sessions) {
    session.close();
  }
}
process.on("SIGUSR2", closeSessions);
process.on("SIGINT", () => {
  server.close(() => process.exit(0));
  closeSessions();
});
process.on("SIGTERM", () => process.exit(0));
server.listen(Number(env.HINTPOOL_PORT), env.HINTPOOL_HOST, () => {
  console.log(`listening on ${env.HINTPOOL_HOST}:${server.address().port}`);
});
