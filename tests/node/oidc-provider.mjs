// A real OpenID provider for hoso's sign-in tests: panva's oidc-provider (OpenID-certified),
// pinned in package-lock.json, on 127.0.0.1 only. The tests start one and share it.
//
//   node tests/node/oidc-provider.mjs SECRET_FILE
//
// prints `ready http://127.0.0.1:PORT` on standard output once it listens, and exits when its
// standard input closes (the test process that started it has gone).
//
// Two clients, as a ministry SSO and the national eID portal would register hoso: `hoso-staff`
// and `hoso-citizen`, both confidential (client_secret_basic, the secret read from SECRET_FILE),
// registered for `http://127.0.0.1/auth/{staff,citizen}/callback` as loopback clients (RFC 8252:
// any port, since each test's vault listens on its own). The login page is the provider's own
// interaction, a plain form; any password is accepted, the login name picks the test person.
// Consent is given at once (hoso is a first-party application), as an agency's SSO does.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const secret = readFileSync(process.argv[2], 'utf8').trim();

// The test people. Claim names are hoso's defaults (HOSO_OIDC_STAFF_ROLE_CLAIM and so on).
const people = {
  'lan.nguyen': { name: 'Nguyễn Thị Lan', hoso_role: 'clerk', hoso_office: 'UBND-HAICHAU' },
  'binh.tran': { name: 'Trần Văn Bình', hoso_role: 'officer', hoso_office: 'STP-DANANG' },
  'hoa.le': { name: 'Lê Thị Hoa', hoso_role: 'auditor', hoso_office: 'THANHTRA-DN' },
  'khong.vaitro': { name: 'Không Vai Trò', hoso_office: 'UBND-HAICHAU' },
  'vai.tro.la': { name: 'Vai Trò Lạ', hoso_role: 'superuser', hoso_office: 'UBND-HAICHAU' },
  'van.phong.sai': { name: 'Văn Phòng Sai', hoso_role: 'clerk', hoso_office: 'ubnd hai chau;' },
  'cong.dan': { name: 'Phạm Văn An', national_id: '048090001234', acr: 'vneid-2' },
  'cong.dan.muc1': { name: 'Phạm Văn Ba', national_id: '048090005678', acr: 'vneid-1' },
  'cong.dan.sai': { name: 'Phạm Văn Cư', national_id: '4809', acr: 'vneid-2' },
};

const clients = ['staff', 'citizen'].map((kind) => ({
  client_id: `hoso-${kind}`,
  client_secret: secret,
  application_type: 'native',
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  redirect_uris: [`http://127.0.0.1/auth/${kind}/callback`],
  post_logout_redirect_uris: ['http://127.0.0.1/'],
}));

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients,
    acrValues: ['vneid-1', 'vneid-2'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'hoso_role', 'hoso_office', 'national_id'],
    },
    // The role, office and national ID ride in the ID token itself.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
    pkce: { required: () => true },
    findAccount: (_ctx, sub) => people[sub] && {
      accountId: sub,
      claims: () => {
        const { acr: _acr, ...claims } = people[sub];
        return { sub, ...claims };
      },
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: { Session: 3600, Interaction: 600, Grant: 3600, AccessToken: 600, AuthorizationCode: 60, IdToken: 600 },
  });
  // Loopback, plain HTTP: tell the provider not to demand a TLS proxy.
  provider.proxy = false;

  const interaction = async (req, res) => {
    const details = await provider.interactionDetails(req, res);
    if (details.prompt.name === 'consent') {
      // hoso is a first-party application of this provider: consent is given by the agency.
      const grant = new provider.Grant({ clientId: details.params.client_id, accountId: details.session.accountId });
      grant.addOIDCScope(details.params.scope);
      await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } },
        { mergeWithLastSubmission: true });
      return;
    }
    if (req.method === 'GET') {
      res.setHeader('Content-Type', 'text/html; charset=utf-8');
      res.end(`<!doctype html><html lang="vi"><meta charset="utf-8"><title>Đăng nhập</title>
<h1>Đăng nhập</h1>
<form method="post" action="/interaction/${details.uid}">
<label for="login">Tên đăng nhập</label> <input id="login" name="login" autocomplete="off">
<label for="password">Mật khẩu</label> <input id="password" name="password" type="password">
<button id="submit" type="submit">Đăng nhập</button>
</form>`);
      return;
    }
    let body = '';
    for await (const chunk of req) body += chunk;
    const login = new URLSearchParams(body).get('login') ?? '';
    const person = people[login];
    const result = person
      ? { login: { accountId: login, acr: person.acr } }
      : { error: 'access_denied', error_description: 'no such person' };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  };

  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interaction(req, res).catch((error) => {
        res.statusCode = 400;
        res.end(String(error));
      });
    } else {
      callback(req, res);
    }
  });
  process.stdout.write(`ready ${issuer}\n`);
  // The test reads only that line: whatever the provider says later goes to standard error.
  console.log = console.error;
  console.info = console.error;
  process.stdout.on('error', () => {});
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
