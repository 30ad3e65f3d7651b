// The interop peer's device confirmation page (oidc-provider's userCodeConfirmSource): the
// user code, then what this server verified from the CI's OIDC token (workload identity,
// ci_identity.mjs) apart from what the client merely sent, then Continue and [ Abort ].
//
// It keeps what the browser tests look for on oidc-provider's own page: the title, the code
// in <code>, the form op.deviceConfirmForm, a Continue button with autofocus and an abort
// button. Every value is escaped; one inline stylesheet, allowed by its hash in the page's
// Content-Security-Policy; nothing is loaded from elsewhere.

import * as crypto from 'node:crypto';

export const VERIFIED_HEADING = 'Verified by this server from the CI\u2019s OIDC token';
export const SENT_HEADING = 'Sent by the client, not verified';

const STYLE = 'body{font:16px/1.5 system-ui,sans-serif;background:#eef1f5;margin:0}'
  + 'main{max-width:600px;margin:32px auto;background:#fff;border-radius:12px;padding:24px 28px;'
  + 'box-shadow:0 1px 3px rgba(0,0,0,.12)}h1{font-size:22px;margin:0 0 8px}h2{font-size:16px;margin:0 0 6px}'
  + 'code{display:block;font:700 36px ui-monospace,monospace;letter-spacing:.12em;text-align:center;'
  + 'padding:12px;border:2px dashed #8c959f;border-radius:10px;margin:10px 0}'
  + 'section{padding:12px 14px;border-radius:8px;margin:14px 0}'
  + '.verified{background:#eef9f0;border-left:4px solid #1a7f37}'
  + '.unverified{background:#fff8e6;border-left:4px solid #bf8700}'
  + '.sent{background:#f6f8fa;border-left:4px solid #8c959f}'
  + 'table{width:100%;border-collapse:collapse;font-size:14px}th{text-align:left;width:32%;color:#59636e;font-weight:500}'
  + 'td{font-family:ui-monospace,monospace;overflow-wrap:anywhere}'
  + 'button[autofocus]{width:100%;font:inherit;font-weight:600;padding:12px;border:0;border-radius:8px;'
  + 'background:#1a7f37;color:#fff;margin-top:8px}'
  + 'button[name=abort]{background:none;border:0;color:#cf222e;margin-top:8px;font:inherit}';
const STYLE_HASH = crypto.createHash('sha256').update(STYLE).digest('base64');

function escape(value) {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return String(text).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

function table(rows) {
  return `<table>${rows.map(([name, value]) => `<tr><th>${escape(name)}</th><td>${escape(value)}</td></tr>`).join('')}</table>`;
}

function facts(ci, clientId) {
  const { claims } = ci;
  const run = claims.run_id && `${claims.run_id}${claims.run_attempt ? ` (attempt ${claims.run_attempt})` : ''}`;
  const actor = claims.actor && `${claims.actor}${claims.event_name ? ` (${claims.event_name})` : ''}`;
  return [
    ['Client', clientId],
    ['Repository', claims.repository ?? claims.project_path],
    ['Branch or tag', claims.ref],
    ['Commit', claims.sha],
    ['Workflow', claims.workflow_ref ?? claims.workflow],
    ['Run', run],
    ['Triggered by', actor],
    ['Environment', claims.environment],
    ['Subject (sub)', claims.sub],
    ['Issuer', claims.iss],
  ].filter(([, value]) => value !== undefined && value !== null && value !== '');
}

// oidc-provider's features.deviceFlow.userCodeConfirmSource(ctx, form, client, deviceInfo, userCode)
export async function userCodeConfirmSource(ctx, form, client, deviceInfo, userCode) {
  const ci = deviceInfo?.ci;
  const params = ctx.oidc.entities.DeviceCode?.params ?? {};
  const sent = Object.entries(params).filter(([name]) => !name.startsWith('client_'));
  if (!ci) sent.unshift(['Client', client.clientId]);
  const verified = ci
    ? `<section class="verified"><h2>\u2713 ${escape(VERIFIED_HEADING)}</h2>${table(facts(ci, client.clientId))}</section>`
    : '<section class="unverified"><h2>Nothing on this page is verified</h2><p>This request carries '
      + 'no CI token: anyone who knows the client id could have started it.</p></section>';
  ctx.set('Content-Security-Policy', `default-src 'none'; style-src 'sha256-${STYLE_HASH}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`);
  ctx.type = 'html';
  ctx.body = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Device Login Confirmation</title><style>${STYLE}</style></head><body><main>
<h1>A CI job asks for access</h1>
<p>Continue only if this code is the one the job shows, and the run below is one you expect.</p>
<code>${escape(userCode)}</code>
${verified}
<section class="sent"><h2>${escape(SENT_HEADING)}</h2>${table(sent)}</section>
${form}
<button autofocus type="submit" form="op.deviceConfirmForm">Continue</button>
<button type="submit" form="op.deviceConfirmForm" value="yes" name="abort">[ Abort ]</button>
</main></body></html>`;
}
