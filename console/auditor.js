// The auditor's screen: the log as a filtered, paged table (refusals and errors stand out), one
// entry's detail, the chain's verification status, and a CSV export of the filtered view.

import { allPages, api } from './api.js';
import { csvText } from './csv.js';
import { errorNotice, show, tableRegion } from './views.js';
import { download, errorSummary, field, h, notice, put, when } from './dom.js';
import { ACTIONS, locale, t } from './i18n.js';
import { nationalIdProblem } from './rules.js';
import { holdsSection, requestQueue } from './rights.js';

let root;
let filters = {};
let entries = [];
let next = null;
let chain = null;

export async function mount(main, me) {
  root = main;
  filters = {};
  entries = [];
  next = null;
  show(root, t('audit.title'), [
    h('h1', {}, t('audit.title')),
    h('section', { id: 'chain', class: 'box', 'aria-live': 'polite' }),
    filterForm(),
    // Present before it changes, so a screen reader announces each new count.
    h('p', { id: 'count', 'aria-live': 'polite' }),
    h('div', { id: 'log' }),
    h('div', { id: 'detail' }),
    h('section', { id: 'holds-box', 'aria-labelledby': 'holds-h' }),
    h('section', { id: 'queue', 'aria-labelledby': 'queue-h' })]);
  await Promise.all([checkChain(), search(),
    holdsSection(document.getElementById('holds-box')), requestQueue(document.getElementById('queue'), me)]);
}

function filterForm() {
  const nid = field(t('audit.nid'), h('input', { type: 'text', id: 'f-nid', inputmode: 'numeric', maxlength: 12, autocomplete: 'off' }));
  const actor = field(t('audit.actor'), h('input', { type: 'text', id: 'f-actor', autocomplete: 'off' }));
  const action = field(t('audit.action'), h('select', { id: 'f-action' },
    h('option', { value: '' }, t('audit.any')), ACTIONS.map((a) => h('option', { value: a }, t(`action.${a}`)))));
  const outcome = field(t('audit.outcome'), h('select', { id: 'f-outcome' },
    h('option', { value: '' }, t('audit.any')), ['allowed', 'denied', 'error'].map((o) => h('option', { value: o }, t(`outcome.${o}`)))));
  const since = field(t('audit.since'), h('input', { type: 'date', id: 'f-since' }));
  const until = field(t('audit.until'), h('input', { type: 'date', id: 'f-until' }));
  nid.control.addEventListener('input', () => nid.setError(/^[0-9]*$/.test(nid.control.value) ? null : t('err.nid.digits')));
  const summary = h('div');
  return h('form', {
    class: 'filters', novalidate: true,
    onsubmit: async (ev) => {
      ev.preventDefault();
      const problem = nid.control.value ? nationalIdProblem(nid.control.value) : null;
      nid.setError(problem && t(problem));
      put(summary, errorSummary(t('app.error_title'), problem ? [[nid.control.id, t(problem)]] : []));
      if (problem) { summary.firstChild.focus(); return; }
      filters = {};
      if (nid.control.value) filters.national_id = nid.control.value;
      if (actor.control.value.trim()) filters.actor = actor.control.value.trim();
      if (action.control.value) filters.action = action.control.value;
      if (outcome.control.value) filters.outcome = outcome.control.value;
      // Dates are the auditor's own days: from the start of `since` to the end of `until`.
      if (since.control.value) filters.since = new Date(`${since.control.value}T00:00:00`).toISOString();
      if (until.control.value) {
        const end = new Date(`${until.control.value}T00:00:00`);
        end.setDate(end.getDate() + 1);
        filters.until = end.toISOString();
      }
      await search();
    },
  },
  summary,
  h('fieldset', {}, h('legend', {}, t('audit.filters')),
    h('div', { class: 'grid' }, nid.el, actor.el, action.el, outcome.el, since.el, until.el)),
  h('div', { class: 'actions' },
    h('button', { type: 'submit', id: 'f-apply' }, t('audit.apply')),
    h('button', { type: 'reset', class: 'secondary', onclick: () => { filters = {}; setTimeout(search); } }, t('audit.clear')),
    h('button', { type: 'button', class: 'secondary', id: 'csv', onclick: exportCsv }, t('audit.csv'))));
}

async function search() {
  entries = [];
  next = null;
  await more();
}

async function more() {
  const log = document.getElementById('log');
  const query = new URLSearchParams(filters);
  query.set('limit', '100');
  if (next) query.set('cursor', next);
  try {
    const page = await api('GET', `/v1/audit?${query}`);
    entries.push(...page.entries);
    next = page.next;
  } catch (error) {
    put(log, errorNotice(error));
    return;
  }
  drawTable(log);
}

function drawTable(log) {
  const count = document.getElementById('count');
  if (!entries.length) {
    count.textContent = t('audit.empty');
    put(log);
    return;
  }
  count.textContent = t('audit.count', entries.length);
  const cols = [t('audit.seq'), t('audit.at'), t('audit.who'), t('audit.office'), t('audit.action'), t('audit.outcome'), t('audit.case'), t('audit.reason')];
  put(log,
    tableRegion(t('audit.entries'), h('table', { id: 'entries' },
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, entries.map((e) => h('tr', { class: `outcome-${e.outcome}`, 'data-seq': e.seq },
        h('td', {}, h('button', { type: 'button', class: 'link-button', onclick: (ev) => detail(e, ev.currentTarget), 'aria-label': `${t('audit.detail')} ${e.seq}` }, String(e.seq))),
        h('td', {}, when(e.at, locale())),
        h('td', {}, e.actor),
        h('td', {}, e.office),
        h('td', {}, t(`action.${e.action}`)),
        h('td', {}, h('span', { class: `badge badge-outcome-${e.outcome}` }, t(`outcome.${e.outcome}`))),
        h('td', {}, e.case_ref ?? ''),
        h('td', {}, reasonText(e.reason))))))),
    next ? h('button', { type: 'button', class: 'secondary', id: 'more', onclick: more }, t('audit.more')) : null);
}

/** A refusal's reason is an error code: say it in words, keeping the code for the record. */
function reasonText(reason) {
  if (!reason) return '';
  const words = t(`api.${reason}`);
  return words === `api.${reason}` ? reason : `${words} (${reason})`;
}

/** One entry's detail; closing it returns focus to the button that opened it. */
function detail(e, opener) {
  const box = document.getElementById('detail');
  const row = (label, value) => [h('dt', {}, label), h('dd', {}, value ?? '—')];
  put(box, h('section', { class: 'box detail', tabindex: '-1', id: 'entry-detail', 'aria-label': t('audit.detail') },
    h('h2', {}, `${t('audit.detail')} · ${e.seq}`),
    h('dl', { class: 'facts' },
      row(t('audit.at'), when(e.at, locale())),
      row(t('audit.who'), e.actor),
      row(t('audit.role'), t(`role.${e.role}`)),
      row(t('audit.office'), e.office),
      row(t('audit.action'), `${t(`action.${e.action}`)} (${e.action})`),
      row(t('audit.outcome'), t(`outcome.${e.outcome}`)),
      row(t('audit.document'), e.document_id),
      row(t('audit.grant'), e.grant_id),
      row(t('audit.case'), e.case_ref),
      row(t('audit.reason'), reasonText(e.reason))),
    h('button', { type: 'button', class: 'secondary', id: 'close-detail', onclick: () => { put(box); opener?.focus(); } }, t('audit.close'))));
  box.firstChild.focus();
}

async function checkChain() {
  const box = document.getElementById('chain');
  put(box, h('h2', {}, t('audit.chain')), h('p', {}, t('audit.checking')));
  try {
    chain = await api('GET', '/v1/audit/verify');
    chain.checkedAt = new Date().toISOString();
  } catch (error) {
    put(box, h('h2', {}, t('audit.chain')), errorNotice(error));
    return;
  }
  const at = when(chain.checkedAt, locale());
  put(box,
    h('h2', {}, t('audit.chain')),
    chain.ok
      ? notice('success', h('p', { id: 'chain-status' }, t('audit.intact', chain.entries, chain.head.slice(0, 16), at)))
      : notice('error', h('p', { id: 'chain-status' }, t('audit.broken', chain.first_bad_seq ?? '?', chain.problem ?? '', at))),
    h('button', { type: 'button', class: 'secondary', id: 'check-chain', onclick: checkChain }, t('audit.check')));
}

const CSV_COLUMNS = ['seq', 'at', 'actor', 'role', 'office', 'action', 'outcome', 'document_id', 'grant_id', 'case_ref', 'reason'];


async function exportCsv(ev) {
  const button = ev.target;
  button.disabled = true;
  try {
    const all = await allPages('/v1/audit', filters, (n) => { button.textContent = t('audit.csv_progress', n); });
    download(new Blob([csvText(CSV_COLUMNS, all)], { type: 'text/csv;charset=utf-8' }), `hoso-audit-${new Date().toISOString().slice(0, 10)}.csv`);
  } catch (error) {
    document.getElementById('log').prepend(errorNotice(error));
  } finally {
    button.disabled = false;
    button.textContent = t('audit.csv');
  }
}
