// The citizen's rights on every screen that needs them: the queue of requests with their legal
// deadlines (clerks act on them, auditors watch), a citizen's own requests and export, filing a
// request at the desk, and legal holds (auditors). Screens import this; it imports no screen.

import { api } from './api.js';
import { download, errorSummary, field, h, notice, put, when } from './dom.js';
import { locale, t } from './i18n.js';
import { nationalIdProblem, textProblem } from './rules.js';
import { errorNotice, fieldMessage, hidden, tableRegion } from './views.js';

export const KINDS = ['access', 'provide', 'correct', 'restrict', 'object', 'withdraw_consent', 'erase'];
const RESTRICTING = ['restrict', 'object', 'withdraw_consent'];

/** A legal deadline as the day it ends on in Vietnam, whatever the browser's own zone (a
 * deadline ends at 23:59:59 Hà Nội time). */
function dueDay(text) {
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) return String(text);
  return d.toLocaleDateString(locale(), { timeZone: 'Asia/Ho_Chi_Minh', dateStyle: 'medium' });
}

/** A list of requests as a table. `act` (a clerk's) adds the form that moves each open one on.
 * A citizen's own list does not name the citizen. */
function requestTable(id, label, list, act, own = false) {
  const cols = ['received', 'citizen', 'kind', 'answer_due', 'due', 'state'].filter((c) => !own || c !== 'citizen');
  if (act) cols.push('action');
  return tableRegion(label, h('table', { id },
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, t(`rights.col_${c}`))))),
    h('tbody', {}, list.map((q) => h('tr', { class: q.overdue ? 'overdue' : null, 'data-id': q.id },
      h('td', {}, when(q.received_at, locale())),
      own ? null : h('td', {}, q.citizen),
      h('td', {}, t(`rights.kind.${q.kind}`)),
      h('td', {}, dueDay(q.answer_due)),
      h('td', {}, dueDay(q.due), q.overdue ? h('strong', { class: 'badge badge-overdue' }, ` ${t('rights.overdue')}`) : null),
      h('td', {}, t(`rights.state.${q.state}`), q.reason ? h('span', { class: 'meta' }, ` · ${q.reason}`) : null),
      act ? h('td', {}, act(q)) : null)))));
}

/** The open requests of every citizen, the next deadline soonest first; a clerk can move each on. */
export async function requestQueue(box, me) {
  let list;
  try {
    list = (await api('GET', '/v1/requests')).requests;
  } catch (error) {
    put(box, errorNotice(error));
    return;
  }
  const act = me.role === 'clerk' ? (q) => moveButton(q, () => requestQueue(box, me)) : null;
  put(box,
    h('h2', { id: 'queue-h' }, t('rights.queue')),
    h('p', {}, t('rights.queue_lead')),
    list.length ? requestTable('request-queue', t('rights.queue'), list, act) : h('p', { class: 'empty' }, t('rights.none_open')));
}

/** A button that opens the form moving request `q` on, in place. */
function moveButton(q, redraw) {
  if (!['received', 'in_progress', 'extended'].includes(q.state)) {
    return RESTRICTING.includes(q.kind) && q.state === 'done' ? liftButton(q, redraw) : '';
  }
  const slot = h('div', {});
  const open = h('button', { type: 'button', class: 'secondary move' }, t('rights.move'), hidden(` ${t(`rights.kind.${q.kind}`)} ${q.citizen}`));
  open.addEventListener('click', () => put(slot, moveForm(q, redraw)));
  put(slot, open);
  return slot;
}

function liftButton(q, redraw) {
  const button = h('button', { type: 'button', class: 'secondary lift-restriction' }, t('rights.lift'), hidden(` ${q.citizen}`));
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await api('POST', `/v1/restrictions/${q.id}/lift`);
    } catch (error) {
      button.replaceWith(errorNotice(error));
      return;
    }
    await redraw();
  });
  return button;
}

function moveForm(q, redraw) {
  const states = q.state === 'received' ? ['in_progress', 'extended', 'done', 'refused'] : ['extended', 'done', 'refused'];
  const state = field(t('rights.next'), h('select', { class: 'next-state' },
    states.filter((s) => s !== 'extended' || !q.extended).map((s) => h('option', { value: s }, t(`rights.state.${s}`)))));
  const reason = field(t('rights.reason'), h('input', { type: 'text', class: 'move-reason', autocomplete: 'off' }), t('rights.reason_hint'));
  const corrected = q.kind === 'correct'
    ? field(t('rights.corrected'), h('input', { type: 'text', class: 'corrected', autocomplete: 'off' }), t('rights.corrected_hint'))
    : null;
  const summary = h('div');
  const outcome = h('div', { 'aria-live': 'polite' });
  return h('form', {
    class: 'move-form', novalidate: true,
    onsubmit: async (ev) => {
      ev.preventDefault();
      const next = state.control.value;
      const needsReason = next === 'extended' || next === 'refused';
      const problem = needsReason ? (textProblem(reason.control.value, 500) ?? null) : null;
      reason.setError(fieldMessage(reason, problem));
      put(summary, errorSummary(t('app.error_title'), problem ? [[reason.control.id, fieldMessage(reason, problem)]] : []));
      if (problem) { summary.firstChild.focus(); return; }
      const body = { state: next };
      if (reason.control.value.trim()) body.reason = reason.control.value.trim();
      if (corrected?.control.value.trim()) body.document_id = corrected.control.value.trim();
      try {
        const done = await api('POST', `/v1/requests/${q.id}`, { json: body });
        put(outcome, notice('success', h('p', {}, t('rights.updated')), erasureOutcome(done.outcome)));
        setTimeout(redraw, done.outcome ? 8000 : 0);
      } catch (error) {
        put(outcome, errorNotice(error));
      }
    },
  }, summary, state.el, reason.el, corrected?.el, h('button', { type: 'submit' }, t('rights.apply')), outcome);
}

/** What carrying out an erasure did: how many were erased, and each kept with why. */
function erasureOutcome(o) {
  if (!o) return null;
  return [h('p', {}, t('rights.erased_n', o.erased.length)),
    o.kept.length ? h('ul', { class: 'kept' }, o.kept.map((k) => h('li', {}, t('rights.kept', k.document_id, k.reason)))) : null];
}

/** A citizen's requests and a form to file one: on the citizen's own screen, or at the desk
 * for the citizen on screen (the clerk confirms they checked the CCCD). */
export async function citizenRequests(box, me, nid) {
  let list;
  try {
    list = (await api('GET', `/v1/citizens/${nid}/requests`)).requests;
  } catch (error) {
    put(box, errorNotice(error));
    return;
  }
  const redraw = () => citizenRequests(box, me, nid);
  const act = me.role === 'clerk' ? (q) => moveButton(q, redraw) : null;
  put(box,
    h('h2', { id: 'requests-h' }, me.role === 'citizen' ? t('rights.mine') : t('rights.of_citizen')),
    h('p', {}, t('rights.lead')),
    list.length ? requestTable('requests', t('rights.mine'), list, act, me.role === 'citizen') : h('p', { class: 'empty' }, t('rights.none')),
    fileForm(box, me, nid, redraw));
}

function fileForm(box, me, nid, redraw) {
  const kind = field(t('rights.kind_label'), h('select', { id: 'request-kind' },
    KINDS.map((k) => h('option', { value: k }, t(`rights.kind.${k}`)))));
  const checked = me.role === 'clerk'
    ? h('div', { class: 'checkbox' }, h('input', { type: 'checkbox', id: 'identity-checked' }), h('label', { for: 'identity-checked' }, t('rights.identity_checked')))
    : null;
  const said = h('div', { 'aria-live': 'polite' });
  const summary = h('div');
  return h('form', {
    id: 'file-request', novalidate: true,
    onsubmit: async (ev) => {
      ev.preventDefault();
      const unchecked = checked && !document.getElementById('identity-checked').checked;
      put(summary, errorSummary(t('app.error_title'), unchecked ? [['identity-checked', t('rights.check_first')]] : []));
      if (unchecked) { summary.firstChild.focus(); return; }
      try {
        const q = await api('POST', `/v1/citizens/${nid}/requests`, {
          json: { kind: kind.control.value, identity_checked: Boolean(checked) },
        });
        await redraw();
        const where = box.querySelector('#file-request') ?? box;
        where.before(notice('success', h('p', { id: 'request-filed' }, t('rights.filed', dueDay(q.answer_due), dueDay(q.due)))));
        box.querySelector('#request-filed')?.setAttribute('tabindex', '-1');
        box.querySelector('#request-filed')?.focus();
      } catch (error) {
        put(said, errorNotice(error));
      }
    },
  }, h('h3', { class: 'form-title' }, me.role === 'citizen' ? t('rights.file') : t('rights.file_for')), summary, kind.el, checked,
  h('button', { type: 'submit', id: 'send-request' }, t('rights.send')), said);
}

/** The citizen's own data as one signed ZIP, with or without the scans. */
export function exportSection(nid) {
  const scans = h('input', { type: 'checkbox', id: 'export-scans' });
  const said = h('div', { 'aria-live': 'polite' });
  const button = h('button', { type: 'button', id: 'export', class: 'secondary' }, t('rights.download'));
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const response = await api('GET', `/v1/citizens/${nid}/export${scans.checked ? '?scans=true' : ''}`, { raw: true });
      download(await response.blob(), `hoso-export-${new Date().toISOString().slice(0, 10)}.zip`);
      put(said);
    } catch (error) {
      put(said, errorNotice(error));
    } finally {
      button.disabled = false;
    }
  });
  return h('section', { 'aria-labelledby': 'export-h' },
    h('h2', { id: 'export-h' }, t('rights.export')),
    h('p', {}, t('rights.export_lead')),
    h('div', { class: 'checkbox' }, scans, h('label', { for: 'export-scans' }, t('rights.with_scans'))),
    button, said);
}

/** Legal holds in force, lifted with a button; and the form that places one. */
export async function holdsSection(box) {
  let list;
  try {
    list = (await api('GET', '/v1/holds')).holds;
  } catch (error) {
    put(box, errorNotice(error));
    return;
  }
  const redraw = () => holdsSection(box);
  const lift = (hold) => {
    const button = h('button', { type: 'button', class: 'secondary lift-hold' }, t('holds.lift'), hidden(` ${hold.case_ref}`));
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await api('POST', `/v1/holds/${hold.id}/lift`);
      } catch (error) {
        button.replaceWith(errorNotice(error));
        return;
      }
      await redraw();
    });
    return button;
  };
  const cols = ['what', 'reason', 'case', 'by', 'since', 'until', 'action'];
  put(box,
    h('h2', { id: 'holds-h' }, t('holds.title')),
    h('p', {}, t('holds.lead')),
    list.length
      ? tableRegion(t('holds.title'), h('table', { id: 'holds' },
        h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, t(`holds.col_${c}`))))),
        h('tbody', {}, list.map((x) => h('tr', {},
          h('td', {}, x.document_id ? t('holds.one_document', x.document_id) : t('holds.all_of', x.citizen)),
          h('td', {}, x.reason), h('td', {}, x.case_ref), h('td', {}, `${x.placed_by} · ${x.placed_office}`),
          h('td', {}, when(x.placed_at, locale())), h('td', {}, x.until ? when(x.until, locale()) : t('holds.open_ended')),
          h('td', {}, lift(x)))))))
      : h('p', { class: 'empty' }, t('holds.none')),
    holdForm(redraw));
}

function holdForm(redraw) {
  const nid = field(t('holds.nid'), h('input', { type: 'text', inputmode: 'numeric', maxlength: 12, autocomplete: 'off', id: 'hold-nid' }));
  const doc = field(t('holds.document'), h('input', { type: 'text', autocomplete: 'off', id: 'hold-document' }), t('holds.document_hint'));
  const reason = field(t('holds.reason'), h('input', { type: 'text', autocomplete: 'off', id: 'hold-reason' }));
  const caseRef = field(t('holds.case'), h('input', { type: 'text', autocomplete: 'off', id: 'hold-case' }));
  const until = field(t('holds.until'), h('input', { type: 'date', id: 'hold-until' }), t('holds.until_hint'));
  const summary = h('div');
  const said = h('div', { 'aria-live': 'polite' });
  return h('form', {
    id: 'place-hold', novalidate: true,
    onsubmit: async (ev) => {
      ev.preventDefault();
      const problems = [];
      const one = Boolean(nid.control.value) !== Boolean(doc.control.value.trim());
      const nidProblem = nid.control.value ? nationalIdProblem(nid.control.value) : null;
      nid.setError(nidProblem ? t(nidProblem) : (one ? null : t('holds.one_of')));
      if (nid.control.value ? nidProblem : !one) problems.push([nid.control.id, nidProblem ? t(nidProblem) : t('holds.one_of')]);
      for (const [f, max] of [[reason, 500], [caseRef, 64]]) {
        const p = textProblem(f.control.value, max);
        f.setError(fieldMessage(f, p));
        if (p) problems.push([f.control.id, fieldMessage(f, p)]);
      }
      put(summary, errorSummary(t('app.error_title'), problems));
      if (problems.length) { summary.firstChild.focus(); return; }
      const body = { reason: reason.control.value.trim(), case_ref: caseRef.control.value.trim() };
      if (nid.control.value) body.national_id = nid.control.value;
      else body.document_id = doc.control.value.trim();
      if (until.control.value) body.until = new Date(`${until.control.value}T23:59:59`).toISOString();
      try {
        await api('POST', '/v1/holds', { json: body });
        await redraw();
      } catch (error) {
        put(said, errorNotice(error));
      }
    },
  }, h('h3', { class: 'form-title' }, t('holds.place')), summary,
  h('div', { class: 'grid' }, nid.el, doc.el, reason.el, caseRef.el, until.el),
  h('button', { type: 'submit', id: 'place-hold-go' }, t('holds.place')), said);
}

/** A button that downloads the receipt (C2SP tlog-proof) of line `seq` of a citizen's log. */
export function receiptButton(nid, seq, label) {
  const button = h('button', { type: 'button', class: 'link-button receipt' }, t('citizen.receipt'), hidden(` ${label}`));
  button.addEventListener('click', async () => {
    try {
      const response = await api('GET', `/v1/citizens/${nid}/access-log/${seq}/proof`, { raw: true });
      download(await response.blob(), `hoso-receipt-${seq}.proof`);
    } catch (error) {
      button.replaceWith(errorNotice(error));
    }
  });
  return button;
}
