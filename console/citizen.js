// The citizen's screen: "my records" (metadata only) and "who read my records".

import { api } from './api.js';
import { badge, documentFacts, errorNotice, show, tableRegion } from './views.js';
import { h, put, when } from './dom.js';
import { locale, t } from './i18n.js';
import { citizenRequests, exportSection, receiptButton } from './rights.js';

export async function mount(main, me) {
  put(main, h('p', { class: 'loading' }, t('app.loading')));
  const nid = me.sub;
  let documents;
  let reads;
  let grants;
  try {
    [documents, reads, grants] = await Promise.all([
      api('GET', `/v1/citizens/${nid}/documents`).then((r) => r.documents),
      api('GET', `/v1/citizens/${nid}/access-log?limit=1000`).then((r) => r.entries),
      api('GET', `/v1/citizens/${nid}/grants`).then((r) => r.grants),
    ]);
  } catch (error) {
    show(main, t('citizen.mine'), [h('h1', {}, t('citizen.mine')), errorNotice(error)]);
    return;
  }
  const purposeOf = new Map(grants.map((g) => [g.grant_id, g.purpose]));
  const documentName = new Map(documents.map((d) => [d.id, t(`doctype.${d.doc_type}`)]));
  show(main, t('citizen.mine'), [
    h('h1', {}, t('citizen.mine')),
    h('p', { class: 'lead' }, t('citizen.mine_lead')),
    h('h2', {}, t('citizen.documents')),
    h('ul', { class: 'cards', id: 'documents' }, documents.map((d) => h('li', { class: 'card doc' },
      h('div', { class: 'card-head' }, h('h3', {}, t(`doctype.${d.doc_type}`)), badge(d.status)),
      documentFacts(d)))),
    h('h2', { id: 'reads-h' }, t('citizen.who')),
    h('p', {}, t('citizen.who_lead')),
    reads.length
      ? tableRegion(t('citizen.who'), h('table', { id: 'reads', 'aria-labelledby': 'reads-h' },
        h('thead', {}, h('tr', {}, [t('audit.at'), t('audit.office'), t('audit.who'), t('audit.case'), t('receipt.purpose'), t('audit.action'), t('citizen.receipt')].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, reads.slice().reverse().map((e) => h('tr', {},
          h('td', {}, when(e.at, locale())),
          h('td', {}, e.office),
          h('td', {}, e.actor),
          h('td', {}, e.case_ref ?? ''),
          h('td', {}, purposeOf.get(e.grant_id) ?? ''),
          h('td', {}, t(`action.${e.action}`), e.document_id && documentName.has(e.document_id) ? ` · ${documentName.get(e.document_id)}` : ''),
          h('td', {}, receiptButton(nid, e.seq, `${t(`action.${e.action}`)} ${when(e.at, locale())}`)))))))
      : h('p', { class: 'empty' }, t('citizen.no_reads')),
    reads.length ? h('p', { class: 'hint', id: 'receipt-how' }, t('citizen.receipt_how')) : null,
    h('h2', {}, t('citizen.shares')),
    grants.length
      ? h('ul', { class: 'cards', id: 'grants' }, grants.map((g) => h('li', { class: 'card grant' },
        h('div', { class: 'card-head' }, h('h3', {}, g.case_ref), h('span', { class: `badge badge-grant-${g.status}` }, t(`grant.status.${g.status}`))),
        h('p', {}, g.purpose),
        h('p', { class: 'meta' }, t('grant.officer', g.grantee, g.grantee_office), ' · ', t('grant.until', when(g.expires_at, locale())), ' · ', t('grant.uses', g.uses, g.max_uses)))))
      : h('p', { class: 'empty' }, t('clerk.no_grants')),
    h('section', { id: 'citizen-requests', 'aria-labelledby': 'requests-h' }),
    exportSection(nid)]);
  await citizenRequests(document.getElementById('citizen-requests'), me, nid);
}
