// A real third-party authorization server for ci_shark's interop tests:
// panva/oidc-provider (pinned in package.json / package-lock.json), configured
// the way a team would configure it for CI approvals, with TTLs short enough
// for tests.
//
//   node tests/interop/provider.mjs [--port N]
//        [--trust-ci-issuer JWKS_URL --ci-issuer ISS --ci-allow CLIENT:CLAIM=GLOB ...]
//
// Listens on 127.0.0.1 only (port 0 = a free one), prints exactly one line
//   READY http://127.0.0.1:<port>
// on stdout once it accepts connections, logs one line per request on stderr,
// and exits on SIGTERM, SIGINT or when its stdin closes (so a test runner that
// dies cannot leave it behind).
//
// Clients (all public, token_endpoint_auth_method "none", DPoP-bound):
//   ci-shark           the client under test; device codes live 90 s
//   ci-shark-expiring  same, but device codes live 3 s, to test expiry fast
//   ci-shark-wi        same as ci-shark; the tests name it in --ci-allow rules
// plus one confidential client, "resource-server" (secret "rs-secret"), that a
// resource server would use for introspection (RFC 7662).
//
// Workload identity (ci_identity.mjs): with --trust-ci-issuer, a device authorization
// request may carry the CI's OIDC token as client_assertion_type (RFC 7523 jwt-bearer) +
// client_assertion; a client a --ci-allow rule names must. oidc-provider cannot take such a
// token as client authentication (see ci_identity.mjs and docs/compatibility.md), so the two
// fields are registered as extraParams, with a validator that verifies the token and keeps
// its claims for deviceInfo; the confirmation page (confirm_page.mjs) shows them under
// "Verified by this server from the CI's OIDC token". Only JWT-less client authentication
// methods are enabled, so oidc-provider leaves those two fields to the validator. Polls,
// refresh and revoke ignore them: oidc-provider has no hook there.
//
// Accounts: "maintainer" and "mallory" (any password: these are oidc-provider's
// development login pages, devInteractions). The sign-in page takes any other
// login too, but the approval then fails with server_error (findAccount knows
// nobody else; see docs/compatibility.md).
//
// By hand (stdin must stay open): sleep infinity | node tests/interop/provider.mjs

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import { Provider, errors } from 'oidc-provider';

import { CiTrust, JWT_BEARER, Refused } from './ci_identity.mjs';
import { userCodeConfirmSource } from './confirm_page.mjs';

const HOST = '127.0.0.1';

// RFC 8628 §3.2: "interval" is optional and defaults to 5 s; oidc-provider
// never sends it (and never answers slow_down), so a conforming client polls
// every 5 s. The tests use a thin post-middleware that adds "interval": 1 to
// the device authorization response so each scenario finishes in seconds. It
// only changes what the client is told; the server does not enforce any
// interval, so this does not hide a client that polls too fast.
const POLL_INTERVAL_S = 1;

const DEVICE_CODE_TTL_S = { 'ci-shark': 90, 'ci-shark-expiring': 3, 'ci-shark-wi': 90 };

const ACCOUNTS = {
  maintainer: { sub: 'maintainer', name: 'Mae Maintainer', email: 'maintainer@example.test' },
  mallory: { sub: 'mallory', name: 'Mallory Intruder', email: 'mallory@example.test' },
};

function parsePort(argv) {
  const index = argv.indexOf('--port');
  if (index === -1) return Number(process.env.PORT || 0);
  return Number(argv[index + 1]);
}

function signingKeys() {
  // Fresh keys each run: nothing persists, nothing secret is committed.
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return [
    { ...rsa.privateKey.export({ format: 'jwk' }), kid: 'rs256', use: 'sig', alg: 'RS256' },
    { ...ec.privateKey.export({ format: 'jwk' }), kid: 'es256', use: 'sig', alg: 'ES256' },
  ];
}

const publicClient = (clientId) => ({
  client_id: clientId,
  client_name: `ci_shark interop (${clientId})`,
  token_endpoint_auth_method: 'none',
  application_type: 'native',
  grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
  response_types: [],
  redirect_uris: [],
  dpop_bound_access_tokens: true,
});

function invalidClient(description) {
  const error = new errors.InvalidClient(description);
  error.status = 401;
  error.statusCode = 401;
  return error;
}

// The CI token's claims, per request, from the extraParams validator to deviceInfo.
const verifiedClaims = new WeakMap();

// extraParams: the RFC 7523 fields, verified at the device authorization endpoint (the
// only endpoint of this configuration where extraParams validators run).
function workloadIdentityParams(trust) {
  return {
    client_assertion_type: null,
    async client_assertion(ctx, assertion, client) {
      const assertionType = ctx.oidc.params.client_assertion_type;
      // The token is never stored: the device code keeps its params, so drop them here.
      ctx.oidc.params.client_assertion = undefined;
      ctx.oidc.params.client_assertion_type = undefined;
      if (assertion === undefined && assertionType === undefined) {
        if (trust?.requiresIdentity(client.clientId)) {
          throw invalidClient(`client '${client.clientId}' must authenticate with its CI's OIDC token: send client_assertion_type=${JWT_BEARER} and client_assertion, a fresh CI token with aud ${ctx.oidc.issuer}`);
        }
        return;
      }
      if (!trust) throw invalidClient('this server trusts no CI issuer, so it takes no client_assertion');
      if (assertion === undefined) throw invalidClient('client_assertion is missing');
      try {
        const claims = await trust.verify({
          assertionType, assertion, clientId: client.clientId, audience: ctx.oidc.issuer,
        });
        verifiedClaims.set(ctx, claims);
      } catch (err) {
        if (err instanceof Refused) throw invalidClient(err.message);
        throw err;
      }
    },
  };
}

function configuration(trust) {
  return {
    // No JWT client authentication: oidc-provider would read client_assertion itself and
    // take its sub for the client_id (see the header).
    clientAuthMethods: ['none', 'client_secret_basic'],
    extraParams: workloadIdentityParams(trust),
    clients: [
      publicClient('ci-shark'),
      publicClient('ci-shark-expiring'),
      publicClient('ci-shark-wi'),
      {
        client_id: 'resource-server',
        client_secret: 'rs-secret',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: [],
        response_types: [],
        redirect_uris: [],
      },
    ],
    jwks: { keys: signingKeys() },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    scopes: ['openid', 'offline_access'],
    claims: { openid: ['sub'], profile: ['name'], email: ['email'] },
    features: {
      devInteractions: { enabled: true },
      deviceFlow: {
        enabled: true,
        deviceInfo(ctx) {
          const claims = verifiedClaims.get(ctx);
          return { ip: ctx.ip, ua: ctx.get('user-agent'), ...(claims ? { ci: { claims } } : {}) };
        },
        userCodeConfirmSource,
      },
      dPoP: {
        enabled: true,
        // 32 random bytes: nonces are derived from it and a 60 s time step; a
        // fresh secret per run is fine because nothing survives a restart anyway.
        nonceSecret: crypto.randomBytes(32),
        // Demand a server-provided nonce in every DPoP proof, at the token
        // endpoint (400 use_dpop_nonce) and at userinfo (401 use_dpop_nonce).
        requireNonce: () => true,
      },
      revocation: { enabled: true },
      introspection: { enabled: true },
      userinfo: { enabled: true },
    },
    async findAccount(ctx, sub) {
      const account = ACCOUNTS[sub];
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { ...account };
        },
      };
    },
    ttl: {
      AccessToken: 300,
      RefreshToken: 600,
      IdToken: 300,
      Grant: 600,
      Interaction: 120,
      Session: 600,
      DeviceCode: (ctx, deviceCode, client) => DEVICE_CODE_TTL_S[client.clientId] ?? 90,
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><head><title>oops</title></head><body><h1>oops</h1>`
        + `<pre id="error">${JSON.stringify(out).replace(/</g, '&lt;')}</pre></body></html>`;
    },
  };
}

function addPollInterval(provider) {
  const path = new URL(provider.urlFor('device_authorization')).pathname;
  provider.use(async (ctx, next) => {
    await next();
    if (
      ctx.method === 'POST'
      && ctx.path === path
      && ctx.status === 200
      && ctx.body
      && typeof ctx.body === 'object'
      && !('interval' in ctx.body)
    ) {
      ctx.body = { ...ctx.body, interval: POLL_INTERVAL_S };
    }
  });
}

function logRequests(provider) {
  provider.use(async (ctx, next) => {
    const started = Date.now();
    try {
      await next();
    } finally {
      let detail = '';
      if (ctx.status >= 400 && ctx.body && typeof ctx.body === 'object') {
        detail = ` ${JSON.stringify(ctx.body)}`;
      }
      process.stderr.write(
        `${new Date().toISOString()} ${ctx.method} ${ctx.url} -> ${ctx.status}`
        + ` (${Date.now() - started} ms)${detail}\n`,
      );
    }
  });
  provider.on('server_error', (ctx, err) => {
    process.stderr.write(`server_error: ${err.stack}\n`);
  });
}

async function main() {
  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(parsePort(process.argv), HOST, resolve);
  });
  const { port } = server.address();
  const issuer = `http://${HOST}:${port}`;

  const provider = new Provider(issuer, configuration(CiTrust.fromArgv(process.argv)));
  logRequests(provider);
  addPollInterval(provider);
  server.on('request', provider.callback());

  let stopping = false;
  const stop = (why) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`stopping (${why})\n`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.stdin.on('end', () => stop('stdin closed'));
  process.stdin.on('error', () => stop('stdin error'));
  process.stdin.resume();

  process.stdout.write(`READY ${issuer}\n`);
}

main().catch((err) => {
  process.stderr.write(`failed to start: ${err.stack}\n`);
  process.exit(1);
});
