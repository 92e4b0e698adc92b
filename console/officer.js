// The case officer's screen: the scope of the grant their link carries, the granted documents,
// and copies. Each copy read spends a use, so a copy is fetched once and those same bytes are
// previewed, checked and downloaded.

import { api, setGrant } from './api.js';
import { badge, documentFacts, errorNotice, hidden, previewOf, show } from './views.js';
import { h, notice, put, when, download } from './dom.js';
import { locale, t } from './i18n.js';

let root;
let me;

export async function mount(main, who) {
  root = main;
  me = who;
  if (me.grant_id) await scopeScreen();
  else await myGrantsScreen();
}

/** A signed-in officer (no grant link): the grants made for them, newest first; opening one
 * reads through it with their own session. */
async function myGrantsScreen() {
  let grants;
  try {
    grants = (await api('GET', '/v1/me/grants')).grants;
  } catch (error) {
    show(root, t('officer.mine'), [h('h1', {}, t('officer.mine')), errorNotice(error)]);
    return;
  }
  const open = (g) => {
    setGrant(g.grant_id);
    me = { ...me, grant_id: g.grant_id };
    scopeScreen();
  };
  show(root, t('officer.mine'), [
    h('h1', {}, t('officer.mine')),
    grants.length
      ? h('ul', { class: 'cards', id: 'my-grants' }, grants.map((g) => h('li', { class: 'card' },
        h('h2', {}, g.case_ref),
        h('p', {}, g.purpose),
        h('p', { class: 'hint' }, t('officer.mine_until', when(g.expires_at, locale()), g.uses_left)),
        h('button', { type: 'button', class: 'open-grant', onclick: () => open(g) }, t('officer.open_grant', g.case_ref)))))
      : h('p', { class: 'empty', id: 'my-grants-empty' }, t('officer.mine_none'))]);
}

async function scopeScreen(opened = null) {
  let scope;
  try {
    scope = await api('GET', `/v1/grants/${me.grant_id}`);
  } catch (error) {
    show(root, t('officer.title'), [h('h1', {}, t('officer.title')), errorNotice(error)]);
    return;
  }
  const scopeBox = scopeFacts(scope);
  if (scope.status !== 'active') {
    // The copy just fetched (if this read spent the last use) stays on screen; a refusal does
    // not, the state above already says it.
    const copy = opened?.id === 'copy' ? opened : null;
    show(root, t('officer.title'), [h('h1', {}, t('officer.title')), notice('warning', h('p', { id: 'grant-state' }, t(`officer.${scope.status}`))), scopeBox, copy]);
    return;
  }
  let documents;
  try {
    documents = (await api('GET', `/v1/grants/${me.grant_id}/documents`)).documents;
  } catch (error) {
    show(root, t('officer.title'), [h('h1', {}, t('officer.title')), scopeBox, refusal(error)]);
    return;
  }
  const holder = documents[0]?.holder_name;
  show(root, t('officer.title'), [
    h('h1', {}, t('officer.title')),
    holder ? h('p', { class: 'lead' }, `${t('officer.citizen')}: `, h('strong', { id: 'holder' }, holder)) : null,
    scopeBox,
    h('h2', {}, t('officer.documents')),
    documents.length
      ? h('ul', { class: 'cards', id: 'documents' }, documents.map((d) => documentCard(d, scope)))
      : h('p', { class: 'empty' }, t('officer.none')),
    opened]);
}

function scopeFacts(scope) {
  const row = (label, value, id) => [h('dt', {}, label), h('dd', { id }, value)];
  return h('section', { class: 'box scope', 'aria-label': t('officer.scope') },
    h('h2', {}, t('officer.scope')),
    h('dl', { class: 'facts' },
      row(t('receipt.dossier'), scope.case_ref, 'scope-dossier'),
      row(t('receipt.purpose'), scope.purpose),
      row(t('officer.types'), scope.doc_types.map((d) => t(`doctype.${d}`)).join(', ')),
      row(t('doc.status'), t(`grant.status.${scope.status}`), 'scope-status'),
      scope.status === 'active'
        ? row(t('officer.uses_label'), t('officer.uses_left', scope.uses_left, scope.max_uses), 'uses-left')
        : row(t('officer.uses_label'), t('grant.uses', scope.uses, scope.max_uses)),
      row(t('officer.until_label'), t('officer.expires', when(scope.expires_at, locale())))));
}

/** A refusal in plain words: revoked, expired, used up, or whatever else the API said. */
function refusal(error) {
  const plain = { grant_revoked: 'officer.revoked', grant_expired: 'officer.expired', grant_exhausted: 'officer.used_up' }[error.code];
  return plain ? notice('warning', h('p', { id: 'grant-state' }, t(plain))) : errorNotice(error);
}

function documentCard(d, scope) {
  const open = h('button', { type: 'button', class: 'open-copy' }, t('officer.open'), hidden(` ${t(`doctype.${d.doc_type}`)}`));
  open.disabled = scope.uses_left < 1;
  open.addEventListener('click', () => openCopy(d, open));
  return h('li', { class: 'card doc', 'data-id': d.id },
    h('div', { class: 'card-head' }, h('h3', {}, t(`doctype.${d.doc_type}`)), badge(d.status)),
    documentFacts(d),
    h('div', { class: 'actions' }, open));
}

const EXTENSIONS = { 'application/pdf': 'pdf', 'image/jpeg': 'jpg', 'image/png': 'png', 'image/tiff': 'tif' };

async function openCopy(d, button) {
  button.disabled = true;
  let response;
  try {
    response = await api('GET', `/v1/documents/${d.id}/content`, { raw: true });
  } catch (error) {
    await scopeScreen(refusal(error));
    return;
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  const blob = new Blob([bytes], { type: d.content_type });
  const url = URL.createObjectURL(blob);
  const digest = hex(await crypto.subtle.digest('SHA-256', bytes));
  const attestation = response.headers.get('hoso-attestation') ?? d.attestation;
  const signature = attestation ? await checkAttestation(attestation, d, digest, bytes.length) : null;
  const name = `${d.doc_type}-${d.doc_number}.${EXTENSIONS[d.content_type] ?? 'bin'}`.replace(/[^\p{L}\p{N}._-]/gu, '_');
  const copy = h('section', { class: 'copy', id: 'copy', 'data-sha256': digest, 'aria-labelledby': 'copy-h' },
    h('h2', { id: 'copy-h' }, t(`doctype.${d.doc_type}`), ' · ', d.doc_number),
    notice('success', t('officer.opened')),
    attestationWords(d, signature, digest),
    h('div', { class: 'actions' },
      h('button', { type: 'button', id: 'download', onclick: () => download(blob, name) }, t('officer.download'))),
    d.content_type === 'image/tiff' ? h('p', {}, t('officer.no_preview')) : previewOf({ type: d.content_type, name }, url));
  await scopeScreen(copy);
  document.getElementById('copy')?.scrollIntoView();
}

function attestationWords(d, signature, digest) {
  const lines = [];
  // "Verified" is exactly this: a clerk compared the scan with the original and signed it.
  if (d.verified) {
    lines.push(h('p', {}, t('officer.attested', d.verified.by, d.verified.office, when(d.verified.at, locale()))));
  } else {
    lines.push(h('p', {}, t('officer.not_attested')));
  }
  if (d.card_check) lines.push(h('p', { id: 'card-check' }, t(`officer.card_${d.card_check}`)));
  if (digest === d.sha256) lines.push(h('p', {}, t('officer.bytes_ok')));
  if (signature === true) lines.push(h('p', { id: 'signature', class: 'ok' }, t('officer.signature_ok')));
  if (signature === false) lines.push(h('p', { id: 'signature', class: 'bad' }, t('officer.signature_bad')));
  if (signature === 'unchecked') lines.push(h('p', { id: 'signature' }, t('officer.signature_unchecked')));
  return notice(signature === false || digest !== d.sha256 ? 'error' : 'info', ...lines);
}

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function b64url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(text.length / 4) * 4, '=');
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/**
 * Checks the vault's attestation (a compact JWS, EdDSA, typ hoso-attestation+jwt) the way
 * `hoso verify-copy` does: the key must be the vault's attestation key (its kid is derived from
 * the key bytes), the signature must hold, and the claims must name exactly these bytes.
 * Returns true, false, or 'unchecked' when the browser lacks Ed25519.
 */
async function checkAttestation(jws, d, digest, size) {
  try {
    const [h64, p64, s64] = jws.split('.');
    const header = JSON.parse(new TextDecoder().decode(b64url(h64)));
    const claims = JSON.parse(new TextDecoder().decode(b64url(p64)));
    if (header.alg !== 'EdDSA' || header.typ !== 'hoso-attestation+jwt') return false;
    const jwks = await fetch('/.well-known/jwks.json', { cache: 'no-store' }).then((r) => r.json());
    const jwk = jwks.keys.find((k) => k.kid === header.kid && k.kty === 'OKP' && k.crv === 'Ed25519' && k.use === 'sig');
    if (!jwk || !header.kid.startsWith('attestation-')) return false;
    const raw = b64url(jwk.x);
    const kid = `attestation-${hex(await crypto.subtle.digest('SHA-256', raw)).slice(0, 16)}`;
    if (kid !== header.kid) return false;
    let key;
    try {
      key = await crypto.subtle.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, { name: 'Ed25519' }, false, ['verify']);
    } catch {
      return 'unchecked';
    }
    const valid = await crypto.subtle.verify({ name: 'Ed25519' }, key, b64url(s64), new TextEncoder().encode(`${h64}.${p64}`));
    return valid && claims.document_id === d.id && claims.sha256 === digest && claims.size === size;
  } catch {
    return false;
  }
}
