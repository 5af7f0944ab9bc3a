// A real OpenID provider for the gateway's tests: panva's oidc-provider with its development
// login and consent pages, PKCE required, accounts with a `groups` claim, and a few test-only
// endpoints under /__test/ (never part of the protocol):
//   GET  /__test/stats     counts of discovery, JWKS, token and userinfo requests
//   POST /__test/rotate    a new signing key set (the old keys are gone)
//   PUT  /__test/accounts  replace the accounts: {"<login>": {claims...}}; the login is the subject
//   PUT  /__test/clients   replace the registered clients (the provider is rebuilt, keys kept)
//   PUT  /__test/settings  {"conform_id_token_claims": bool}: true keeps profile and groups out of
//                          the ID token (userinfo only), as some IdPs do (the provider is rebuilt)
// Started by tests/oidc_idp.py: listens on 127.0.0.1, a free port, and prints "READY <port>".
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import http from 'node:http';
import fs from 'node:fs';

import Provider from 'oidc-provider';

const settings = JSON.parse(fs.readFileSync(process.env.PROVIDER_CONFIG, 'utf8'));
let accounts = settings.accounts || {};
let clients = settings.clients || [];
let keys = [newKey()];
let provider = null;
let handler = null;
const stats = { discovery: 0, jwks: 0, token: 0, userinfo: 0, rotations: 0 };

function newKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };
}

function build(issuer) {
  provider = new Provider(issuer, {
    clients,
    jwks: { keys },
    cookies: { keys: ['gateway-test-provider-cookie-key'] },
    async findAccount(ctx, id) {
      const claims = accounts[id];
      if (!claims) return undefined;
      return { accountId: id, async claims() { return { ...claims, sub: id }; } };
    },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    scopes: ['openid', 'profile', 'email', 'groups'],
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
    pkce: { required: () => true },
    // false: the requested claims ride in the ID token; true: only in userinfo (its `sub` is then checked).
    conformIdTokenClaims: Boolean(settings.conform_id_token_claims),
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<h1>oidc-provider error</h1><pre>${JSON.stringify(out).replace(/</g, '&lt;')}</pre>`;
    },
  });
  handler = provider.callback();
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      try { resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}')); } catch (err) { reject(err); }
    });
  });
}

const server = http.createServer(async (req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  if (path.startsWith('/__test/')) {
    try {
      if (path === '/__test/stats') return send(res, 200, stats);
      if (path === '/__test/rotate' && req.method === 'POST') {
        keys = [newKey()];
        stats.rotations += 1;
        build(provider.issuer);
        return send(res, 200, { kid: keys[0].kid });
      }
      if (path === '/__test/accounts' && req.method === 'PUT') {
        accounts = await readBody(req);
        return send(res, 200, { ok: true });
      }
      if (path === '/__test/settings' && req.method === 'PUT') {
        Object.assign(settings, await readBody(req));
        build(provider.issuer);
        return send(res, 200, { ok: true });
      }
      if (path === '/__test/clients' && req.method === 'PUT') {
        clients = await readBody(req);
        build(provider.issuer);
        return send(res, 200, { ok: true });
      }
      return send(res, 404, { error: 'unknown test endpoint' });
    } catch (err) {
      return send(res, 400, { error: String(err) });
    }
  }
  if (path === '/.well-known/openid-configuration') stats.discovery += 1;
  else if (path === '/jwks') stats.jwks += 1;
  else if (path === '/token') stats.token += 1;
  else if (path === '/me') stats.userinfo += 1;
  if (!handler) return send(res, 503, { error: 'starting' });
  return handler(req, res);
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  build(`http://127.0.0.1:${port}`);
  process.stdout.write(`READY ${port}\n`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
