// The console's entry: takes a sign-in link's token out of the address bar, finds out who is
// signed in, and opens that person's screen. One screen per role, each in its own module.

import { api, ApiError, clearToken, setToken, token } from './api.js';
import { errorSummary, h, put, field, notice, when } from './dom.js';
import { errorNotice, show, tableRegion } from './views.js';
import { lang, locale, setLang, t } from './i18n.js';

const screens = {
  clerk: () => import('./clerk.js'),
  officer: () => import('./officer.js'),
  auditor: () => import('./auditor.js'),
  citizen: () => import('./citizen.js'),
};

const main = document.getElementById('main');
const bar = document.getElementById('bar');
let expiryTimer = null;
let signedOutBecause = null;

/** A sign-in link's fragment is `#token=JWT`: keep the token for this tab, then drop it from
 * the address bar and history so it is not bookmarked, shared or shown. */
function takeTokenFromFragment() {
  const match = /^#token=([A-Za-z0-9_\-.]+)$/.exec(window.location.hash);
  if (match) {
    setToken(match[1]);
    window.history.replaceState(null, '', window.location.pathname);
  }
}

function signOut(reason) {
  clearToken();
  clearInterval(expiryTimer);
  signedOutBecause = reason;
  start();
}

/** "Đăng xuất": the vault revokes the token at once; a session from an identity provider then
 * ends there too (its end-session page sends the browser back here). */
async function signOutNow() {
  let next = null;
  try {
    next = (await api('POST', '/v1/me/sign-out')).end_session_url;
  } catch {
    // Already ended (expired, revoked): signing out here is all that is left.
  }
  if (next) {
    clearToken();
    window.location.assign(next);
    return;
  }
  signOut('signed_out');
}

function drawBar(me) {
  const who = me
    ? h('div', { class: 'who', id: 'who' },
      h('strong', {}, t(`role.${me.role}`)),
      ' · ', me.role === 'citizen' ? me.sub.replace(/^(\d{3})\d{6}(\d{3})$/, '$1******$2') : me.sub,
      me.office && me.office !== '-' ? ` · ${me.office}` : '',
      h('span', { class: 'until', id: 'session-until' }, ` · ${t('app.session_until', when(me.expires_at, locale()))}`))
    : null;
  put(bar,
    h('span', { class: 'brand' }, 'hoso'),
    who,
    h('span', { class: 'spacer' }),
    h('button', {
      type: 'button', class: 'link-button', id: 'lang', lang: lang() === 'vi' ? 'en' : 'vi',
      onclick: () => { setLang(lang() === 'vi' ? 'en' : 'vi'); start(); },
    }, t('app.lang')),
    me ? h('button', { type: 'button', class: 'secondary', id: 'signout', onclick: signOutNow }, t('app.signout')) : null);
}

async function signInScreen() {
  drawBar(null);
  const input = h('input', { type: 'url', autocomplete: 'off', spellcheck: 'false' });
  const linkField = field(t('signin.paste'), input, t('signin.paste_hint'));
  const reason = signedOutBecause;
  signedOutBecause = null;
  // The identity providers this vault signs people in through, if any.
  const offered = await fetch('/auth/providers', { cache: 'no-store' }).then((r) => r.json()).catch(() => ({}));
  const buttons = [
    offered.citizen ? h('a', { class: 'button', id: 'signin-citizen', href: '/auth/citizen/login' }, t('signin.citizen')) : null,
    offered.staff ? h('a', { class: 'button secondary', id: 'signin-staff', href: '/auth/staff/login' }, t('signin.staff')) : null,
  ].filter(Boolean);
  const summary = h('div');
  show(main, t('signin.title'), [
    h('h1', {}, t('signin.title')),
    reason ? notice(reason === 'signed_out' ? 'info' : 'warning', reason === 'signed_out' ? t('signin.signed_out')
      : reason === 'expired' ? t('signin.expired') : t('signin.refused', reason)) : null,
    buttons.length ? h('div', { class: 'providers', id: 'providers' }, buttons) : null,
    h('p', { class: 'lead' }, buttons.length ? t('signin.or_link') : t('signin.lead')),
    h('form', {
      novalidate: true,
      onsubmit: (ev) => {
        ev.preventDefault();
        const at = input.value.indexOf('#token=');
        const problem = at < 0 ? (input.value.trim() ? t('signin.bad_link') : t('err.enter', t('signin.paste').toLowerCase())) : null;
        linkField.setError(problem);
        put(summary, errorSummary(t('app.error_title'), problem ? [[input.id, problem]] : []));
        if (problem) { summary.firstChild.focus(); return; }
        setToken(input.value.slice(at + '#token='.length).trim());
        start();
      },
    }, summary, linkField.el, h('button', { type: 'submit' }, t('signin.go')))]);
}

async function adminScreen(me) {
  const status = h('div', {}, t('app.loading'));
  const sessions = h('div', { id: 'sessions' }, t('app.loading'));
  show(main, t('admin.title'), [h('h1', {}, t('admin.title')), h('p', { class: 'lead' }, t('admin.lead')), status,
    h('h2', {}, t('admin.sessions')), h('p', {}, t('admin.sessions_lead')), sessions]);
  const ready = await fetch('/readyz', { cache: 'no-store' }).then((r) => r.json()).catch(() => null);
  put(status, ready ? h('pre', { class: 'box' }, JSON.stringify(ready, null, 2)) : errorNotice(new ApiError(0, 'network', '')));
  await drawSessions(sessions, me);
  return me;
}

/** The live sessions hoso issued, each with a button that ends it at once. */
async function drawSessions(box, me) {
  let list;
  try {
    list = (await api('GET', '/v1/sessions')).sessions;
  } catch (error) {
    put(box, errorNotice(error));
    return;
  }
  const end = async (s, button) => {
    button.disabled = true;
    try {
      await api('DELETE', `/v1/sessions/${s.jti}`);
    } catch (error) {
      put(box, errorNotice(error));
      return;
    }
    await drawSessions(box, me);
    // The ended row is gone: focus the list that redrew, not the page's top.
    box.setAttribute('tabindex', '-1');
    box.focus();
  };
  const row = (s) => {
    const button = h('button', { type: 'button', class: 'secondary end-session' }, t('admin.end', s.actor));
    button.addEventListener('click', () => end(s, button));
    return h('tr', {},
      h('td', {}, s.actor), h('td', {}, t(`role.${s.role}`)), h('td', {}, s.office),
      h('td', {}, t(`admin.via_${s.via}`)), h('td', {}, when(s.issued_at, locale())),
      h('td', {}, when(s.expires_at, locale())),
      h('td', {}, s.jti === me.jti ? t('admin.you') : button));
  };
  put(box, list.length
    ? tableRegion(t('admin.sessions'), h('table', { id: 'session-list' },
      h('thead', {}, h('tr', {}, ['who', 'role', 'office', 'via', 'since', 'until', 'end'].map((c) => h('th', { scope: 'col' }, t(`admin.col_${c}`))))),
      h('tbody', {}, list.map(row))))
    : h('p', { class: 'empty' }, t('admin.no_sessions')));
}

async function start() {
  document.documentElement.lang = lang();
  document.title = t('app.title');
  const skip = document.querySelector('.skip');
  if (skip) skip.textContent = t('app.skip');
  takeTokenFromFragment();
  if (!token()) { await signInScreen(); return; }
  put(main, h('p', { class: 'loading' }, t('app.loading')));
  let me;
  try {
    me = await api('GET', '/v1/me');
  } catch (error) {
    clearToken();
    signedOutBecause = error.code === 'token_expired' ? 'expired' : t(`api.${error.code}`);
    await signInScreen();
    return;
  }
  drawBar(me);
  // Signs out the moment the token expires, even if nothing is clicked.
  clearInterval(expiryTimer);
  const ends = new Date(me.expires_at).getTime();
  expiryTimer = setInterval(() => { if (Date.now() >= ends) signOut('expired'); }, 1000);
  if (me.role === 'admin') { await adminScreen(me); return; }
  const screen = await screens[me.role]();
  await screen.mount(main, me);
}

window.addEventListener('hoso:session-ended', (ev) => {
  signOut(ev.detail.code === 'token_expired' ? 'expired' : t(`api.${ev.detail.code}`));
});
window.addEventListener('hashchange', () => { if (window.location.hash.startsWith('#token=')) start(); });

start();
