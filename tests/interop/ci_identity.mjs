// Workload identity for the interop peer (provider.mjs): a CI's OIDC token, sent by a client
// as RFC 7523 `client_assertion` on its device authorization request, verified here with
// Node's own crypto (independent of the Python sandbox's verifier), and the verified claims
// kept for the confirmation page.
//
// Why not oidc-provider's own client authentication: its private_key_jwt takes the client
// from the assertion's `sub` and demands `iss` == `sub` == client_id, checked against the
// client's own keys (lib/shared/token_auth.js, token_jwt_auth.js in 8.8.1). A CI token's
// `iss` is the CI (https://token.actions.githubusercontent.com) and its `sub` the run
// (repo:octo/app:ref:refs/heads/main), so it can never pass. See docs/compatibility.md.
//
// Checks, in order, each failure a reason a person can act on (never the token):
// client_assertion_type is jwt-bearer; a compact JWS; alg RS256 or ES256 (none and HMAC are
// refused before any key is touched); iss is the trusted issuer; the signature, with the
// issuer's key (JWKS fetched on first use, again for an unknown kid at most every 30 s);
// aud names this server alone; exp (required), nbf, iat within 60 s; jti (required) once; then
// every --ci-allow rule for the client: CLAIM matches GLOB (* any run of characters, ?
// one; case-sensitive).

import * as crypto from 'node:crypto';

export const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const ALGORITHMS = { RS256: 'RSA', ES256: 'EC' };
const SKEW_S = 60;
const REFETCH_EVERY_MS = 30_000;
const MAX_ASSERTION_CHARS = 16 * 1024;

export class Refused extends Error {}

function shown(value) {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text !== undefined && text.length <= 120 && /^[\x20-\x7e]*$/.test(text)
    ? `'${text}'` : '(a value not shown)';
}

function decodeSegment(segment) {
  if (!/^[A-Za-z0-9_-]*$/.test(segment)) throw new Refused('client_assertion is not a well-formed JWT');
  return Buffer.from(segment, 'base64url');
}

function json(segment) {
  try {
    const value = JSON.parse(decodeSegment(segment).toString('utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error();
    return value;
  } catch (err) {
    if (err instanceof Refused) throw err;
    throw new Refused('client_assertion is not a well-formed JWT');
  }
}

function globRegExp(pattern) {
  const body = [...pattern].map((ch) => {
    if (ch === '*') return '.*';
    if (ch === '?') return '.';
    return ch.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }).join('');
  return new RegExp(`^${body}$`, 's');
}

export class ClaimRule {
  constructor(text) {
    const equals = text.indexOf('=');
    const target = equals === -1 ? '' : text.slice(0, equals);
    const colon = target.lastIndexOf(':');
    this.clientId = target.slice(0, colon);
    this.claim = target.slice(colon + 1);
    this.pattern = text.slice(equals + 1);
    if (equals === -1 || colon < 1 || !this.claim || !this.pattern) {
      throw new Error(`--ci-allow ${text}: write CLIENT:CLAIM=GLOB, e.g. ci-shark:repository=octo/app`);
    }
    this.text = text;
    this.regExp = globRegExp(this.pattern);
  }

  appliesTo(clientId) {
    return this.clientId === '*' || this.clientId === clientId;
  }

  refusal(claims) {
    const value = claims[this.claim];
    if (value === undefined || value === null) return `the CI token has no ${this.claim} claim (the rule is ${this.text})`;
    if (typeof value !== 'string') return `the CI token's ${this.claim} is not a string (the rule is ${this.text})`;
    if (!this.regExp.test(value)) return `${this.claim} is ${shown(value)}, and the rule is ${this.text}`;
    return undefined;
  }
}

export class CiTrust {
  constructor({ issuer, jwksUrl, rules }) {
    this.issuer = issuer;
    this.jwksUrl = jwksUrl;
    this.rules = rules;
    this.keys = [];
    this.fetchedAt = -Infinity;
    this.seen = new Map(); // jti -> expiry (epoch s)
  }

  // --trust-ci-issuer JWKS_URL --ci-issuer ISS --ci-allow CLIENT:CLAIM=GLOB (repeatable)
  static fromArgv(argv) {
    const values = (flag) => argv.flatMap((arg, i) => (arg === flag ? [argv[i + 1]] : []));
    const [jwksUrl] = values('--trust-ci-issuer');
    if (jwksUrl === undefined) return null;
    const [issuer] = values('--ci-issuer');
    const rules = values('--ci-allow').map((text) => new ClaimRule(text));
    if (!issuer || rules.length === 0) {
      throw new Error('--trust-ci-issuer needs --ci-issuer ISS and at least one --ci-allow CLIENT:CLAIM=GLOB');
    }
    return new CiTrust({ issuer, jwksUrl, rules });
  }

  requiresIdentity(clientId) {
    return this.rules.some((rule) => rule.appliesTo(clientId));
  }

  async candidates(kid, alg) {
    const matching = () => this.keys.filter((key) => key.alg === alg && (kid === undefined || [kid, undefined].includes(key.kid)));
    if (matching().length === 0 && Date.now() - this.fetchedAt >= REFETCH_EVERY_MS) {
      this.fetchedAt = Date.now();
      const response = await fetch(this.jwksUrl, { redirect: 'error', signal: AbortSignal.timeout(5000) });
      const { keys } = await response.json();
      this.keys = keys.filter((jwk) => ALGORITHMS[jwk.alg ?? (jwk.kty === 'RSA' ? 'RS256' : 'ES256')] === jwk.kty
        && (jwk.use ?? 'sig') === 'sig' && (jwk.kty !== 'EC' || jwk.crv === 'P-256'))
        .map((jwk) => ({
          kid: jwk.kid,
          alg: jwk.kty === 'RSA' ? 'RS256' : 'ES256',
          key: crypto.createPublicKey({ key: jwk, format: 'jwk' }),
        }));
    }
    return matching();
  }

  // The verified claims of a CI token that authenticates `clientId`; throws Refused.
  async verify({ assertionType, assertion, clientId, audience, now = Date.now() / 1000 }) {
    const rules = this.rules.filter((rule) => rule.appliesTo(clientId));
    if (rules.length === 0) throw new Refused(`client '${clientId}' accepts no CI token on this server`);
    if (assertionType !== JWT_BEARER) throw new Refused(`client_assertion_type must be ${JWT_BEARER}`);
    if (assertion.length > MAX_ASSERTION_CHARS) throw new Refused('client_assertion is too long');
    const segments = assertion.split('.');
    if (segments.length !== 3) throw new Refused('client_assertion is not a signed JWT (three base64url parts)');
    const header = json(segments[0]);
    const claims = json(segments[1]);
    if (!(header.alg in ALGORITHMS)) {
      throw new Refused(`client_assertion alg ${shown(header.alg)} is not accepted: a CI's OIDC token is signed with RS256 or ES256`);
    }
    if ('crit' in header) throw new Refused('client_assertion has critical header parameters (crit)');
    if (claims.iss !== this.issuer) {
      throw new Refused(`the CI token's issuer is ${shown(claims.iss)}; this server trusts CI tokens from '${this.issuer}' only`);
    }
    const data = Buffer.from(`${segments[0]}.${segments[1]}`);
    const signature = decodeSegment(segments[2]);
    const keys = await this.candidates(typeof header.kid === 'string' ? header.kid : undefined, header.alg);
    const verifies = keys.some(({ key }) => crypto.verify(
      'sha256',
      data,
      header.alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key,
      signature,
    ));
    if (!verifies) {
      throw new Refused(`the CI token's signature does not verify with the keys of '${this.issuer}': the token was altered, or signed by another key`);
    }
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!audiences.includes(audience)) {
      throw new Refused(`client_assertion aud is ${shown(claims.aud)}, not this server's issuer '${audience}': request the CI token with audience ${audience}`);
    }
    if (audiences.length > 1) {
      // Audience injection (draft-ietf-oauth-rfc7523bis): each audience could present it here.
      throw new Refused(`client_assertion aud names other audiences too (${shown(claims.aud)}): any of them could present it here as this client; request the CI token with audience ${audience} alone`);
    }
    for (const name of ['exp', 'nbf', 'iat']) {
      if (claims[name] !== undefined && typeof claims[name] !== 'number') throw new Refused(`client_assertion ${name} must be a number`);
    }
    if (claims.exp === undefined) throw new Refused('client_assertion has no exp: RFC 7523 requires one');
    if (now > claims.exp + SKEW_S) {
      throw new Refused(`the CI token expired at ${new Date(claims.exp * 1000).toISOString()}: fetch a fresh CI token for each request`);
    }
    if (claims.nbf !== undefined && now < claims.nbf - SKEW_S) throw new Refused('the CI token is not valid yet: check the clocks');
    if (claims.iat !== undefined && now < claims.iat - SKEW_S) throw new Refused('the CI token was issued in the future: check the clocks');
    if (typeof claims.jti !== 'string' || !claims.jti) throw new Refused('client_assertion has no jti');
    for (const rule of rules) {
      const reason = rule.refusal(claims);
      if (reason) throw new Refused(`client '${clientId}' does not accept this CI identity: ${reason}`);
    }
    for (const [jti, until] of this.seen) if (until < now) this.seen.delete(jti);
    if (this.seen.has(claims.jti)) {
      throw new Refused('this CI token was already used (its jti): fetch a fresh CI token for every request');
    }
    this.seen.set(claims.jti, claims.exp + SKEW_S);
    return claims;
  }
}
