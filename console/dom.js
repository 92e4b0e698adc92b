// Building the page from values. Every value from the API goes in as text (a text node or an
// attribute), never parsed as HTML anywhere in the console, so a holder name
// such as <img src=x onerror=alert(1)> shows as exactly those characters.

import { t } from './i18n.js';

/** h('p', {class: 'x', onclick: fn}, 'text', child, ...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  add(el, children);
  return el;
}

function add(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces everything inside `el`. */
export function put(el, ...children) {
  el.replaceChildren();
  add(el, children);
  return el;
}

let idCounter = 0;
/** A fresh id for pairing a label with its control. */
export function uid(prefix) {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** A labelled form field with room for its own error message (GOV.UK's pattern): the message
 * is tied to the control (`aria-describedby`, after the hint) and starts with a hidden "Error:"
 * so a screen reader says it with the field. `label` is kept for messages that name the field. */
export function field(label, control, hint) {
  control.id = control.id || uid('f');
  const error = h('p', { class: 'field-error', id: `${control.id}-error`, hidden: true });
  const hintEl = hint ? h('p', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
  const describe = (withError) => {
    const ids = [hintEl?.id, withError ? error.id : null].filter(Boolean).join(' ');
    if (ids) control.setAttribute('aria-describedby', ids);
    else control.removeAttribute('aria-describedby');
  };
  describe(false);
  const wrap = h('div', { class: 'field' }, h('label', { for: control.id }, label), hintEl, error, control);
  return {
    el: wrap,
    control,
    label,
    setError(message) {
      error.hidden = !message;
      put(error, message ? [h('span', { class: 'visually-hidden' }, `${t('err.prefix')} `), message] : null);
      wrap.classList.toggle('has-error', Boolean(message));
      if (message) control.setAttribute('aria-invalid', 'true');
      else control.removeAttribute('aria-invalid');
      describe(Boolean(message));
    },
  };
}

/** An error summary at the top of a form: each problem links to its field. Put it on the page,
 * then call `focusSummary` so it is read out and TAB goes on to its links. */
export function errorSummary(title, problems) {
  if (!problems.length) return null;
  const box = h('div', { class: 'error-summary', role: 'alert', tabindex: '-1', 'aria-labelledby': 'error-summary-title' },
    h('h2', { id: 'error-summary-title' }, title),
    h('ul', {}, problems.map(([controlId, message]) =>
      h('li', {}, h('a', { href: `#${controlId}`, onclick: (ev) => { ev.preventDefault(); document.getElementById(controlId)?.focus(); } }, message)))));
  return box;
}

/** A status line that screen readers announce. */
export function notice(kind, ...children) {
  return h('div', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, ...children);
}

/** Formats an RFC 3339 instant for people, in the browser's zone; `dateStyle` 'medium' on
 * paper (a four-digit year). */
export function when(text, locale, dateStyle = 'short') {
  if (!text) return '';
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) return String(text);
  return d.toLocaleString(locale, { dateStyle, timeStyle: 'short' });
}

/** A date (YYYY-MM-DD) as people write it. */
export function day(text, locale) {
  if (!text) return '';
  const d = new Date(`${text}T00:00:00`);
  if (Number.isNaN(d.getTime())) return String(text);
  return d.toLocaleDateString(locale);
}

/** Offers `blob` as a file download named `name`. */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
