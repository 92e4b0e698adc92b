// What several screens show the same way: a document's status badge and facts, a scan's inline
// preview, an API error in plain words. A leaf module: screens import it, it imports no screen.

import { ApiError } from './api.js';
import { day, h, notice, when } from './dom.js';
import { locale, t } from './i18n.js';

/** An error from the API in plain words, with the API's own text as detail. */
export function errorNotice(error) {
  const code = error instanceof ApiError ? error.code : 'internal_error';
  return notice('error', h('p', {}, t(`api.${code}`)),
    error.message ? h('p', { class: 'detail' }, t('api.detail', error.message)) : null);
}

export function badge(status) {
  return h('span', { class: `badge badge-${status}` }, t(`status.${status}`));
}

/** The facts of a document as a definition list (shared with the officer's and citizen's screens). */
export function documentFacts(d) {
  const row = (label, ...value) => [h('dt', {}, label), h('dd', {}, ...value)];
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

