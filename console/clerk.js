// The one-stop desk: look a citizen up, take in scans, verify and revoke, share for a dossier
// and print the citizen's receipt, list and revoke shares. One task per screen.

import { api, postFile, upload } from './api.js';
import { errorSummary, field, h, notice, put, when } from './dom.js';
import { DOC_TYPES, locale, t } from './i18n.js';
import {
  ACCEPTED_TYPES, codeProblem, dossierProblem, maskNationalId, nationalIdProblem, textProblem,
} from './rules.js';
import { badge, documentFacts, errorNotice, fieldMessage, hidden, previewOf, show } from './views.js';
import { citizenRequests, requestQueue } from './rights.js';

let root;
let me;
/** The citizen on screen: { nid, documents, grants, showAll }. Kept in memory only, never in
 * the address bar or storage. */
let citizen = null;

export async function mount(main, who) {
  root = main;
  me = who;
  citizen = null;
  lookupScreen();
}

function lookupScreen(prefill = '') {
  const input = h('input', {
    type: 'text', inputmode: 'numeric', autocomplete: 'off', maxlength: 12, value: prefill, name: 'nid',
  });
  const nid = field(t('clerk.nid'), input, t('clerk.nid_hint'));
  // Checked while typed: a letter is wrong at once; the length once the person asks to look up.
  input.addEventListener('input', () => {
    nid.setError(/^[0-9]*$/.test(input.value) ? null : t('err.nid.digits'));
  });
  const summary = h('div');
  show(root, t('clerk.title'), [
    h('h1', {}, t('clerk.title')),
    h('form', {
      novalidate: true,
      class: 'lookup',
      onsubmit: async (ev) => {
        ev.preventDefault();
        const problem = nationalIdProblem(input.value);
        nid.setError(problem && t(problem));
        put(summary, errorSummary(t('app.error_title'), problem ? [[input.id, t(problem)]] : []));
        if (problem) { summary.firstChild.focus(); return; }
        await openCitizen(input.value);
      },
    }, summary, nid.el, h('button', { type: 'submit', id: 'lookup' }, t('clerk.lookup'))),
    h('section', { id: 'queue', 'aria-labelledby': 'queue-h' })]);
  requestQueue(document.getElementById('queue'), me);
}

async function openCitizen(nid, message = null) {
  citizen = { nid, documents: [], grants: [], showAll: citizen?.nid === nid && citizen.showAll };
  await citizenScreen(message);
}

async function load() {
  const include = citizen.showAll ? '?include=all' : '';
  const [docs, grants] = await Promise.all([
    api('GET', `/v1/citizens/${citizen.nid}/documents${include}`),
    api('GET', `/v1/citizens/${citizen.nid}/grants`),
  ]);
  citizen.documents = docs.documents;
  citizen.grants = grants.grants;
}

/** The citizen's documents and shares. `focus` keeps focus on the control that redrew it. */
async function citizenScreen(message = null, focus = null) {
  if (!focus) put(root, h('p', { class: 'loading' }, t('app.loading')));
  try {
    await load();
  } catch (error) {
    show(root, t('app.error_title'), [h('h1', {}, t('app.error_title')), errorNotice(error),
      h('button', { type: 'button', onclick: () => lookupScreen(citizen.nid) }, t('app.back'))]);
    return;
  }
  const current = citizen.documents.filter((d) => d.status === 'pending' || d.status === 'verified');
  const toggle = h('input', {
    type: 'checkbox', id: 'show-all', checked: citizen.showAll,
    onchange: () => { citizen.showAll = toggle.checked; citizenScreen(null, '#show-all'); },
  });
  const title = t('clerk.citizen', maskNationalId(citizen.nid));
  show(root, title, [
    h('p', {}, h('button', { type: 'button', class: 'link-button', onclick: () => lookupScreen() }, `← ${t('clerk.title')}`)),
    h('h1', {}, title),
    message,
    h('section', { 'aria-labelledby': 'docs-h' },
      h('h2', { id: 'docs-h' }, t('clerk.documents')),
      h('div', { class: 'checkbox' }, toggle, h('label', { for: 'show-all' }, t('clerk.show_all'))),
      citizen.documents.length
        ? h('ul', { class: 'cards', id: 'documents' }, citizen.documents.map(documentCard))
        : h('p', { class: 'empty' }, t('clerk.no_documents'))),
    h('div', { class: 'actions' },
      h('button', { type: 'button', id: 'start-intake', onclick: () => intakeScreen() }, t('clerk.intake')),
      h('button', { type: 'button', id: 'start-share', class: 'secondary', disabled: current.length === 0, onclick: () => shareScreen() }, t('clerk.share'))),
    h('section', { 'aria-labelledby': 'grants-h' },
      h('h2', { id: 'grants-h' }, t('clerk.grants')),
      citizen.grants.length
        ? h('ul', { class: 'cards', id: 'grants' }, citizen.grants.map(grantCard))
        : h('p', { class: 'empty' }, t('clerk.no_grants'))),
    h('section', { id: 'citizen-requests', 'aria-labelledby': 'requests-h' })], focus);
  await citizenRequests(document.getElementById('citizen-requests'), me, citizen.nid);
}

function documentCard(d) {
  const actions = [];
  const what = hidden(` ${t(`doctype.${d.doc_type}`)} ${d.doc_number}`);
  if (d.status === 'pending') {
    actions.push(h('button', { type: 'button', class: 'verify', onclick: () => verify(d) }, t('clerk.verify'), what.cloneNode(true)));
  }
  if (d.status !== 'revoked' && d.status !== 'erased') {
    actions.push(h('button', { type: 'button', class: 'warning revoke', onclick: () => revokeScreen(d) }, t('clerk.revoke'), what));
  }
  return h('li', { class: `card doc doc-${d.status}`, 'data-id': d.id },
    h('div', { class: 'card-head' }, h('h3', {}, t(`doctype.${d.doc_type}`)), badge(d.status)),
    documentFacts(d),
    actions.length ? h('div', { class: 'actions' }, actions) : null);
}

async function verify(d) {
  try {
    await api('POST', `/v1/documents/${d.id}/verify`);
    await citizenScreen(notice('success', t('clerk.verified_ok', t(`doctype.${d.doc_type}`))));
  } catch (error) {
    await citizenScreen(errorNotice(error));
  }
}

function revokeScreen(d) {
  const reason = h('textarea', { rows: 3, id: 'revoke-reason' });
  const reasonField = field(t('clerk.revoke_reason'), reason, t('clerk.revoke_reason_hint'));
  const confirm = h('input', { type: 'checkbox', id: 'revoke-confirm' });
  const confirmError = h('p', { class: 'field-error', id: 'revoke-confirm-error', hidden: true });
  const status = h('div');
  const summary = h('div');
  show(root, t('clerk.revoke_title'), [
    h('h1', {}, t('clerk.revoke_title')),
    h('div', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, t(`doctype.${d.doc_type}`)), badge(d.status)), documentFacts(d)),
    notice('warning', t('clerk.revoke_lead')),
    status,
    summary,
    h('form', {
      novalidate: true,
      onsubmit: async (ev) => {
        ev.preventDefault();
        const problem = fieldMessage(reasonField, textProblem(reason.value, 500));
        reasonField.setError(problem);
        confirmError.hidden = confirm.checked;
        put(confirmError, h('span', { class: 'visually-hidden' }, `${t('err.prefix')} `), t('clerk.revoke_must_confirm'));
        if (confirm.checked) confirm.removeAttribute('aria-describedby');
        else confirm.setAttribute('aria-describedby', confirmError.id);
        const problems = [];
        if (problem) problems.push([reason.id, problem]);
        if (!confirm.checked) problems.push([confirm.id, t('err.revoke_confirm')]);
        put(summary, errorSummary(t('app.error_title'), problems));
        if (problems.length) { summary.firstChild.focus(); return; }
        try {
          await api('POST', `/v1/documents/${d.id}/revoke`, { json: { reason: reason.value } });
          await citizenScreen(notice('success', t('clerk.revoked_ok', t(`doctype.${d.doc_type}`))));
        } catch (error) {
          put(status, errorNotice(error));
        }
      },
    },
    reasonField.el,
    h('div', { class: 'checkbox' }, confirm, h('label', { for: 'revoke-confirm' }, t('clerk.revoke_confirm'))),
    confirmError,
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'warning', id: 'revoke-go' }, t('clerk.revoke_go')),
      h('button', { type: 'button', class: 'secondary', onclick: () => citizenScreen() }, t('app.cancel'))))]);
}

function typeSelect(id) {
  return h('select', { id }, DOC_TYPES.map((type) => h('option', { value: type }, t(`doctype.${type}`))));
}

function intakeScreen() {
  const maxMb = Math.floor(me.max_upload_bytes / (1024 * 1024));
  const type = typeSelect('intake-type');
  const fields = {
    type: field(t('doc.type'), type),
    number: field(t('doc.number'), h('input', { type: 'text', id: 'intake-number', autocomplete: 'off' })),
    holder: field(t('doc.holder'), h('input', { type: 'text', id: 'intake-holder', autocomplete: 'off' })),
    issuedOn: field(t('doc.issued_on'), h('input', { type: 'date', id: 'intake-issued-on' })),
    issuedBy: field(t('doc.issued_by'), h('input', { type: 'text', id: 'intake-issued-by' })),
    expiresOn: field(t('doc.expires_on'), h('input', { type: 'date', id: 'intake-expires-on' })),
    file: field(t('clerk.file'), h('input', {
      type: 'file', id: 'intake-file', accept: ACCEPTED_TYPES.concat(['.pdf', '.jpg', '.jpeg', '.png', '.tif', '.tiff']).join(','),
    }), t('clerk.file_hint', maxMb)),
  };
  const supersedes = h('select', { id: 'intake-supersedes' });
  const supersedesField = field(t('clerk.supersedes'), supersedes);
  const fillSupersedes = () => {
    // Only a current document of the same type can be replaced (the API refuses others).
    const same = citizen.documents.filter((d) => d.doc_type === type.value && (d.status === 'pending' || d.status === 'verified'));
    put(supersedes, h('option', { value: '' }, t('clerk.supersedes_none')),
      same.map((d) => h('option', { value: d.id, selected: same.length === 1 }, `${d.doc_number} · ${d.holder_name}`)));
    supersedesField.el.hidden = same.length === 0;
  };
  type.addEventListener('change', fillSupersedes);
  fillSupersedes();
  // A CCCD's QR code fills the form and catches typing mistakes (it is not signed: it proves
  // nothing about the card).
  const card = cardReader(fields, type);
  // The card is read (or forgotten) again when the type changes after the file was chosen.
  type.addEventListener('change', () => { if (fields.file.control.files[0]) card.read(fields.file.control.files[0]); });
  const checked = h('input', { type: 'checkbox', id: 'intake-checked' });
  const preview = h('div', { class: 'preview', id: 'intake-preview', 'aria-live': 'polite' });
  let previewUrl = null;
  const fileInput = fields.file.control;
  fileInput.addEventListener('change', () => {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    const file = fileInput.files[0];
    fields.file.setError(file ? fileProblem(file, maxMb) : null);
    if (!file || fileProblem(file, maxMb)) { put(preview); return; }
    previewUrl = URL.createObjectURL(file);
    put(preview, h('h3', {}, t('clerk.preview')), previewOf(file, previewUrl));
    card.read(file);
  });
  const progress = h('progress', { id: 'intake-progress', max: 100, value: 0, hidden: true });
  const progressText = h('p', { id: 'intake-progress-text', 'aria-live': 'polite' });
  const summary = h('div');
  const send = h('button', { type: 'submit', id: 'intake-send' }, t('clerk.send'));
  const form = h('form', {
    novalidate: true,
    onsubmit: async (ev) => {
      ev.preventDefault();
      const problems = [];
      const check = (f, problem) => { f.setError(problem); if (problem) problems.push([f.control.id, problem]); };
      const text = (f, max) => fieldMessage(f, textProblem(f.control.value, max));
      check(fields.number, text(fields.number, 64));
      check(fields.holder, text(fields.holder, 200));
      check(fields.issuedOn, fields.issuedOn.control.value ? null : fieldMessage(fields.issuedOn, 'err.date'));
      check(fields.issuedBy, text(fields.issuedBy, 200));
      const file = fileInput.files[0];
      check(fields.file, file ? fileProblem(file, maxMb) : t('err.file.none'));
      card.check(problems);
      put(summary, errorSummary(t('app.error_title'), problems));
      if (problems.length) { summary.firstChild?.focus(); return; }
      const metadata = {
        doc_type: type.value,
        doc_number: fields.number.control.value,
        holder_name: fields.holder.control.value,
        issued_on: fields.issuedOn.control.value,
        issued_by: fields.issuedBy.control.value,
        verified_against_original: checked.checked,
      };
      if (fields.expiresOn.control.value) metadata.expires_on = fields.expiresOn.control.value;
      if (card.override()) metadata.card_override = card.override();
      if (supersedes.value) metadata.supersedes = supersedes.value;
      const body = new FormData();
      body.append('metadata', new Blob([JSON.stringify(metadata)], { type: 'application/json' }));
      body.append('file', file, file.name);
      send.disabled = true;
      progress.hidden = false;
      try {
        const { status } = await upload(`/v1/citizens/${citizen.nid}/documents`, body, (fraction) => {
          const pct = Math.round(fraction * 100);
          progress.value = pct;
          progressText.textContent = t('clerk.uploading', pct);
        });
        const message = status === 201
          ? notice('success', t('clerk.stored', t(`doctype.${metadata.doc_type}`)))
          : notice('info', t('clerk.duplicate'));
        if (previewUrl) URL.revokeObjectURL(previewUrl);
        await citizenScreen(message);
      } catch (error) {
        send.disabled = false;
        progress.hidden = true;
        progressText.textContent = '';
        put(summary, errorNotice(error));
        summary.scrollIntoView();
      }
    },
  },
  summary,
  fields.type.el, fields.number.el, fields.holder.el, fields.issuedOn.el, fields.issuedBy.el,
  fields.expiresOn.el, supersedesField.el, fields.file.el, card.status, preview, card.differs,
  h('div', { class: 'checkbox' }, checked, h('label', { for: 'intake-checked' }, t('clerk.checked'))),
  h('p', { class: 'hint' }, t('clerk.checked_hint')),
  progress, progressText,
  h('div', { class: 'actions' }, send,
    h('button', { type: 'button', class: 'secondary', onclick: () => citizenScreen() }, t('app.cancel'))));
  show(root, t('clerk.intake'), [h('h1', {}, t('clerk.intake')), h('p', { class: 'lead' }, t('clerk.intake_lead')),
    h('p', {}, t('clerk.citizen', maskNationalId(citizen.nid))), form]);
}

/** Reads a CCCD scan's QR through the vault and fills the form from it: each filled field is
 * marked as read from the card; before sending, a field the clerk changed since, or a card of
 * another citizen, is named in plain words and needs a reason to keep. */
function cardReader(fields, type) {
  const status = h('div', { id: 'card-status', 'aria-live': 'polite' });
  const reason = h('textarea', { id: 'intake-card-override', rows: 2 });
  const reasonField = field(t('card.override'), reason, t('card.override_hint'));
  const differs = h('div', { id: 'card-differs', hidden: true });
  let fromCard = null;
  let reading = 0;
  const mapping = () => ({ number: 'national_id', holder: 'holder_name', issuedOn: 'issued_on', expiresOn: 'expires_on' });
  const changed = () => {
    if (!fromCard) return [];
    const norm = (v) => (v ?? '').normalize('NFC').trim().replace(/\s+/g, ' ').toLowerCase();
    return Object.entries(mapping())
      .filter(([key, from]) => fromCard[from] && norm(fields[key].control.value) !== norm(fromCard[from]))
      .map(([key]) => fields[key].label);
  };
  // Another citizen's card is never kept under this one (the vault refuses it too).
  const otherCitizen = () => Boolean(fromCard) && fromCard.national_id !== citizen.nid;
  const showDiffers = () => {
    const list = changed();
    differs.hidden = list.length === 0 && !otherCitizen();
    put(differs,
      otherCitizen() ? notice('error', h('p', { id: 'card-other-citizen' }, t('card.other_citizen'))) : null,
      list.length
        ? [notice('warning', h('p', {}, t('card.differs')), h('ul', { id: 'card-differs-list' }, list.map((name) => h('li', {}, name)))), reasonField.el]
        : null);
  };
  for (const key of Object.keys(mapping())) fields[key].control.addEventListener('change', showDiffers);
  return {
    status,
    differs,
    async read(file) {
      reading += 1;
      const mine = reading;
      fromCard = null;
      showDiffers();
      for (const key of Object.keys(mapping())) fields[key].el.querySelector('.from-card')?.remove();
      if (type.value !== 'cccd') { put(status); return; }
      if (!['image/png', 'image/jpeg', 'image/tiff'].includes(file.type)) { put(status, notice('info', t('card.images_only'))); return; }
      put(status, h('p', { class: 'hint' }, t('card.reading')));
      let read;
      try {
        read = await postFile('/v1/scans/read-card', file);
      } catch (error) {
        put(status, errorNotice(error));
        return;
      }
      // A later choice of file (or of type) has replaced this one: its answer is not used.
      if (mine !== reading) return;
      if (!read.found) { put(status, notice('info', t('card.not_found'))); return; }
      if (!read.recognised) { put(status, notice('info', t('card.not_recognised'))); return; }
      fromCard = read.fields;
      for (const [key, from] of Object.entries(mapping())) {
        if (!fromCard[from]) continue;
        fields[key].control.value = fromCard[from];
        fields[key].el.querySelector('label').after(h('p', { class: 'from-card hint' }, t('card.filled')));
      }
      put(status, notice('success', h('p', {}, t('card.read')), h('p', { class: 'hint' }, t('card.not_proof'))));
      showDiffers();
    },
    /** Before sending: differences without a reason are a problem of the form. */
    check(problems) {
      showDiffers();
      if (otherCitizen()) problems.push([fields.file.control.id, t('card.other_citizen')]);
      const needsReason = changed().length > 0 && !reason.value.trim();
      reasonField.setError(needsReason ? t('card.override_needed') : null);
      if (needsReason) problems.push([reason.id, t('card.override_needed')]);
    },
    override() {
      return changed().length > 0 ? reason.value.trim() : null;
    },
  };
}

function fileProblem(file, maxMb) {
  const type = file.type || (/\.tiff?$/i.test(file.name) ? 'image/tiff' : '');
  if (!ACCEPTED_TYPES.includes(type)) return t('err.file.type');
  if (file.size > me.max_upload_bytes) return t('err.file.size', maxMb);
  return null;
}

const TTLS = [['1d', 86400], ['3d', 3 * 86400], ['7d', 7 * 86400], ['30d', 30 * 86400]];

/** The share form; `focusId` is the field "Sửa" on the check-answers page came back to. */
function shareScreen(previous = null, focusId = null) {
  const current = citizen.documents.filter((d) => d.status === 'pending' || d.status === 'verified');
  const types = [...new Set(current.map((d) => d.doc_type))];
  const dossier = field(t('clerk.dossier'), h('input', { type: 'text', id: 'share-dossier', autocomplete: 'off', value: previous?.case_ref ?? '' }), t('clerk.dossier_hint'));
  // Checked when sent, not on leaving the field: a message appearing as the person reaches for
  // the button would move the button from under their pointer.
  const purpose = field(t('clerk.purpose'), h('input', { type: 'text', id: 'share-purpose', value: previous?.purpose ?? '' }), t('clerk.purpose_hint'));
  const grantee = field(t('clerk.grantee'), h('input', { type: 'text', id: 'share-grantee', autocomplete: 'off', value: previous?.grantee ?? '' }));
  const office = field(t('clerk.grantee_office'), h('input', { type: 'text', id: 'share-office', autocomplete: 'off', value: previous?.grantee_office ?? '' }));
  const ttl = h('select', { id: 'share-ttl' }, TTLS.map(([key, seconds]) => h('option', { value: seconds, selected: (previous?.ttl_seconds ?? 7 * 86400) === seconds }, t(`clerk.ttl.${key}`))));
  const ttlField = field(t('clerk.ttl'), ttl);
  const uses = field(t('clerk.uses'), h('input', { type: 'number', id: 'share-uses', min: 1, max: 1000, value: previous?.max_uses ?? 3 }));
  const boxes = types.map((type) => h('input', { type: 'checkbox', value: type, id: `share-type-${type}`, checked: previous ? previous.doc_types.includes(type) : true }));
  const typesError = h('p', { class: 'field-error', id: 'share-types-error', hidden: true });
  const summary = h('div');
  show(root, t('clerk.share'), [
    h('h1', {}, t('clerk.share')),
    h('p', { class: 'lead' }, t('clerk.share_lead')),
    h('p', {}, t('clerk.citizen', maskNationalId(citizen.nid))),
    h('form', {
      novalidate: true,
      onsubmit: (ev) => {
        ev.preventDefault();
        const problems = [];
        const check = (f, key) => { const m = fieldMessage(f, key); f.setError(m); if (m) problems.push([f.control.id, m]); };
        check(dossier, dossierProblem(dossier.control.value));
        check(purpose, textProblem(purpose.control.value, 500));
        check(grantee, codeProblem(grantee.control.value));
        check(office, codeProblem(office.control.value));
        const n = Number(uses.control.value);
        check(uses, Number.isInteger(n) && n >= 1 && n <= 1000 ? null : 'err.uses');
        const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
        typesError.hidden = chosen.length > 0;
        put(typesError, h('span', { class: 'visually-hidden' }, `${t('err.prefix')} `), t('err.types.none'));
        if (!chosen.length && boxes.length) problems.push([boxes[0].id, t('err.types.none')]);
        put(summary, errorSummary(t('app.error_title'), problems));
        if (problems.length) { summary.firstChild?.focus(); return; }
        checkAnswers({
          national_id: citizen.nid,
          doc_types: chosen,
          case_ref: dossier.control.value,
          purpose: purpose.control.value,
          grantee: grantee.control.value,
          grantee_office: office.control.value,
          ttl_seconds: Number(ttl.value),
          max_uses: n,
        });
      },
    },
    summary,
    dossier.el, purpose.el,
    h('fieldset', { class: 'field', 'aria-describedby': typesError.id },
      h('legend', {}, t('clerk.types')),
      typesError,
      types.length ? types.map((type, i) => h('div', { class: 'checkbox' }, boxes[i], h('label', { for: boxes[i].id }, t(`doctype.${type}`))))
        : h('p', {}, t('clerk.types_none'))),
    grantee.el, office.el, ttlField.el, uses.el,
    h('div', { class: 'actions' },
      h('button', { type: 'submit', id: 'share-next' }, t('clerk.check_answers')),
      h('button', { type: 'button', class: 'secondary', onclick: () => citizenScreen() }, t('app.cancel'))))],
  focusId && `#${CSS.escape(focusId)}`);
}

/** GOV.UK's "check your answers": everything once more, each with a way back to change it. */
function checkAnswers(request) {
  const ttlLabel = TTLS.find(([, s]) => s === request.ttl_seconds)?.[0];
  // Each "Sửa" goes back to its own field, and says which (GOV.UK's change links).
  const row = (label, value, fieldId) => h('div', { class: 'summary-row' }, h('dt', {}, label), h('dd', {}, value),
    h('dd', {}, fieldId
      ? h('button', { type: 'button', class: 'link-button', id: `change-${fieldId}`, onclick: () => shareScreen(request, fieldId) }, t('clerk.change'), hidden(` ${label}`))
      : null));
  const status = h('div');
  const go = h('button', { type: 'button', id: 'share-go' }, t('clerk.share_go'));
  go.addEventListener('click', async () => {
    go.disabled = true;
    try {
      const created = await api('POST', '/v1/grants', { json: request });
      receiptScreen({ ...request, grant_id: created.grant_id, expires_at: created.expires_at, link: created.link, created_at: new Date().toISOString(), created_by: me.sub, office: me.office });
    } catch (error) {
      go.disabled = false;
      put(status, errorNotice(error));
    }
  });
  show(root, t('clerk.check_answers'), [
    h('h1', {}, t('clerk.check_answers')),
    status,
    h('dl', { class: 'summary', id: 'share-summary' },
      row(t('receipt.citizen'), maskNationalId(request.national_id)),
      row(t('receipt.shared'), request.doc_types.map((d) => t(`doctype.${d}`)).join(', '), `share-type-${request.doc_types[0]}`),
      row(t('receipt.dossier'), request.case_ref, 'share-dossier'),
      row(t('receipt.purpose'), request.purpose, 'share-purpose'),
      row(t('receipt.with'), t('grant.officer', request.grantee, request.grantee_office), 'share-grantee'),
      row(t('clerk.ttl'), t(`clerk.ttl.${ttlLabel}`), 'share-ttl'),
      row(t('receipt.uses'), String(request.max_uses), 'share-uses')),
    h('div', { class: 'actions' }, go,
      h('button', { type: 'button', class: 'secondary', onclick: () => shareScreen(request) }, t('app.back')))]);
}

/** The citizen's paper: what was shared, with whom, for which dossier, until when, and a QR
 * code of the dossier code and share id drawn by the vault itself (no network). */
async function receiptScreen(grant) {
  const qr = h('div', { class: 'qr', id: 'receipt-qr' });
  const row = (label, value) => [h('dt', {}, label), h('dd', {}, value)];
  const linkBox = grant.link
    ? h('div', { class: 'print-hide box' },
      h('p', {}, t('receipt.link')),
      h('input', { type: 'text', readonly: true, value: grant.link, id: 'officer-link', class: 'wide', 'aria-label': t('receipt.link') }),
      h('button', {
        type: 'button', class: 'secondary',
        onclick: async (ev) => { await navigator.clipboard?.writeText(grant.link).catch(() => {}); ev.target.textContent = t('receipt.copied'); },
      }, t('receipt.copy')))
    : null;
  show(root, t('receipt.title'), [
    h('article', { class: 'receipt', id: 'receipt' },
      h('header', {}, h('p', { class: 'office' }, me.office), h('h1', {}, t('receipt.title'))),
      h('p', {}, t('receipt.lead')),
      h('div', { class: 'receipt-body' },
        h('dl', { class: 'facts' },
          row(t('receipt.citizen'), maskNationalId(grant.national_id ?? citizen.nid)),
          row(t('receipt.shared'), grant.doc_types.map((d) => t(`doctype.${d}`)).join(', ')),
          row(t('receipt.with'), t('grant.officer', grant.grantee, grant.grantee_office)),
          row(t('receipt.dossier'), grant.case_ref),
          row(t('receipt.purpose'), grant.purpose),
          row(t('receipt.until'), when(grant.expires_at, locale(), 'medium')),
          row(t('receipt.uses'), String(grant.max_uses)),
          row(t('receipt.grant'), grant.grant_id),
          row(t('receipt.by'), `${grant.created_by} · ${grant.office}`),
          row(t('receipt.at'), when(grant.created_at, locale(), 'medium'))),
        h('figure', {}, qr, h('figcaption', {}, t('receipt.qr')))),
      h('p', { class: 'note' }, t('receipt.note'))),
    linkBox,
    h('div', { class: 'actions print-hide' },
      h('button', { type: 'button', id: 'receipt-print', onclick: () => window.print() }, t('receipt.print')),
      h('button', { type: 'button', class: 'secondary', id: 'receipt-done', onclick: () => citizenScreen() }, t('receipt.done')))]);
  try {
    const response = await api('GET', `/v1/grants/${grant.grant_id}/qr`, { raw: true });
    const url = URL.createObjectURL(await response.blob());
    put(qr, h('img', { src: url, alt: `${grant.case_ref} ${grant.grant_id}`, width: 180, height: 180 }));
  } catch (error) {
    put(qr, errorNotice(error));
  }
}

function grantCard(g) {
  return h('li', { class: `card grant grant-${g.status}`, 'data-id': g.grant_id },
    h('div', { class: 'card-head' },
      h('h3', {}, g.case_ref),
      h('span', { class: `badge badge-grant-${g.status}` }, t(`grant.status.${g.status}`))),
    h('p', {}, g.purpose),
    h('p', {}, g.doc_types.map((d) => t(`doctype.${d}`)).join(', ')),
    h('p', { class: 'meta' }, t('grant.officer', g.grantee, g.grantee_office), ' · ',
      t('grant.until', when(g.expires_at, locale())), ' · ', t('grant.uses', g.uses, g.max_uses)),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'secondary', onclick: () => receiptScreen({ ...g, national_id: citizen.nid }) }, t('clerk.receipt_again'), hidden(` ${g.case_ref}`)),
      g.status === 'active'
        ? h('button', { type: 'button', class: 'warning grant-revoke', onclick: () => revokeGrant(g) }, t('clerk.grant_revoke'), hidden(` ${g.case_ref}`))
        : null));
}

async function revokeGrant(g) {
  try {
    await api('DELETE', `/v1/grants/${g.grant_id}`);
    await citizenScreen(notice('success', t('clerk.grant_revoked_ok', g.case_ref)));
  } catch (error) {
    await citizenScreen(errorNotice(error));
  }
}
