// What several screens show the same way: a document's status badge and facts, a scan's inline
// preview, an API error in plain words. A leaf module: screens import it, it imports no screen.

import { ApiError } from './api.js';
import { day, h, notice, put, when } from './dom.js';
import { locale, t } from './i18n.js';

/** Opens a new screen in `root`: its content, its own page title, and focus on the success or
 * information notice it opens with, else on its heading, so a screen reader says where the
 * person now is and TAB starts from there. `focus` (a selector) keeps focus on the control that
 * redrew the screen instead. */
export function show(root, title, children, focus = null) {
  put(root, children);
  document.title = `${title} — hoso`;
  const target = (focus && root.querySelector(focus))
    ?? root.querySelector('.notice-success, .notice-info')
    ?? root.querySelector('h1');
  if (!target) return;
  if (!focus) target.setAttribute('tabindex', '-1');
  target.focus();
}

/** Words a screen reader should read in English inside a Vietnamese page (and the reverse). */
export function other(text, lang) {
  return h('span', { lang }, text);
}

/** An error from the API in plain words, with the API's own text (English) as detail. */
export function errorNotice(error) {
  const code = error instanceof ApiError ? error.code : 'internal_error';
  return notice('error', h('p', {}, t(`api.${code}`)),
    error.message ? h('p', { class: 'detail' }, t('api.detail_label'), ' ', other(error.message, 'en')) : null);
}

/** Text only a screen reader says: what a repeated button acts on. */
export function hidden(text) {
  return h('span', { class: 'visually-hidden' }, text);
}

/** A field's message from a rule's key, naming the field where the key is generic. */
export function fieldMessage(f, key) {
  if (!key) return null;
  const name = f.label.charAt(0).toLowerCase() + f.label.slice(1);
  if (key === 'err.required') return t('err.enter', name);
  if (key === 'err.too_long') return t('err.too_long_in', f.label);
  if (key === 'err.control') return t('err.control_in', f.label);
  if (key === 'err.date') return t('err.date_in', name);
  return t(key);
}

/** A table that may scroll sideways on a phone: a labelled region a keyboard can enter. */
export function tableRegion(label, table) {
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': label, tabindex: '0' }, table);
}

export function badge(status) {
  return h('span', { class: `badge badge-${status}` }, t(`status.${status}`));
}

/** The facts of a document as a definition list (shared with the officer's and citizen's screens). */
export function documentFacts(d) {
  const row = (label, ...value) => [h('dt', {}, label), h('dd', {}, ...value)];
  // A tombstone: its fields went with its key; what remains is that it existed and why it went.
  if (d.status === 'erased') {
    return h('dl', { class: 'facts' },
      row(t('doc.taken_in'), t('doc.by_at', d.taken_in.by, d.taken_in.office, when(d.taken_in.at, locale()))),
      d.erased ? row(t('doc.erased'), t('doc.erased_why', when(d.erased.at, locale()), d.erased.reason)) : null);
  }
  return h('dl', { class: 'facts' },
    row(t('doc.number'), d.doc_number),
    row(t('doc.holder'), d.holder_name),
    row(t('doc.issued_on'), day(d.issued_on, locale())),
    row(t('doc.issued_by'), d.issued_by),
    d.expires_on ? row(t('doc.expires_on'), day(d.expires_on, locale())) : null,
    row(t('doc.taken_in'), t('doc.by_at', d.taken_in.by, d.taken_in.office, when(d.taken_in.at, locale()))),
    d.verified ? row(t('doc.verified'), t('doc.by_at', d.verified.by, d.verified.office, when(d.verified.at, locale()))) : null);
}

/** An inline view of a scan or copy: images as images, PDFs in a frame; TIFF only by name. */
export function previewOf(file, url) {
  const type = file.type;
  if (type === 'image/jpeg' || type === 'image/png') return h('img', { src: url, alt: file.name ?? '', class: 'scan' });
  if (type === 'application/pdf') return h('iframe', { src: url, title: file.name ?? 'PDF', class: 'scan' });
  return h('p', {}, t('clerk.no_preview', file.name ?? ''));
}

