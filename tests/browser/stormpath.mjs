// react-stormpath 2.0.1's own client code (UserService, ClientApiUserService, from npm) run in
// headless Chromium on the gateway's origin, against postern's Stormpath-flavoured account API:
// register, verify by the mailed link, log in, me, update the profile, forgot + change, log out,
// and the OAuth token flow. The code is the package's, unchanged; only React is stubbed (the
// services do not render anything) and the bundle's internal module table is exposed to reach
// the services, which the package does not export.
// Usage: node stormpath.mjs BASE_URL OUTBOX_DIR EMAIL PASSWORD NEW_PASSWORD
// Prints one JSON line with every call's outcome.
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, outbox, email, password, newPassword] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const bundlePath = join(require.resolve('react-stormpath/package.json'), '..', 'dist', 'stormpath-sdk-react.js');
const bundle = readFileSync(bundlePath, 'utf8')
  .replace('return __webpack_require__(0);', 'return __webpack_require__;');

async function mailToken(page, count) {
  const deadline = Date.now() + 20000;
  for (;;) {
    let names = [];
    try { names = readdirSync(outbox).filter((n) => n.endsWith('.eml')).sort(); } catch { /* not yet */ }
    const tokens = names.flatMap((n) => readFileSync(join(outbox, n), 'utf8')
      .replace(/=\r?\n/g, '').replace(/=3D/g, '=')
      .match(new RegExp(`/${page}\\?sptoken=([A-Za-z0-9_-]{43})`, 'g')) || [])
      .map((m) => m.split('=')[1]);
    if (tokens.length >= count) return tokens[count - 1];
    if (Date.now() > deadline) throw new Error(`no ${page}?sptoken link in ${outbox}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const seen = {};
try {
  const page = await browser.newPage();
  await page.goto(`${base}/public/spa`);
  await page.addScriptTag({ content: 'window.React = { version: "15.3.2", createElement() { return {}; } };' });
  await page.addScriptTag({ content: bundle });
  await page.evaluate((baseUri) => {
    const modules = window.ReactStormpath;
    const { UserService, ClientApiUserService } = modules(5);
    const users = new UserService({});
    const api = new ClientApiUserService({ baseUri });
    modules(20).default.setDispatcher({
      dispatch(event) {
        if (event.type === 'TOKEN_SET') api.setToken(event.options.type, event.options.token);
        if (event.callback) event.callback();
      },
    });
    // Each service call as a promise; react-stormpath 2.0.1 calls back twice, the first counts.
    window.call = (which, method, ...args) => new Promise((resolve) => {
      let done = false;
      (which === 'api' ? api : users)[method](...args, (err, result) => {
        if (done) return;
        done = true;
        resolve(err ? { error: { message: err.message, status: err.status, type: err.type } } : { result });
      });
    });
  }, base);
  const call = (which, method, ...args) => page.evaluate(
    ([w, m, a]) => window.call(w, m, ...a), [which, method, args]);

  seen.loginView = await call('users', 'getLoginViewData');
  seen.registerView = await call('users', 'getRegisterViewData');
  seen.register = await call('users', 'register',
    { email, password, givenName: 'Stella', surname: 'Path', customData: { favoriteColor: 'teal' } });
  seen.loginUnverified = await call('users', 'login', { login: email, password });
  seen.verify = await call('users', 'verifyEmail', await mailToken('verify', 1));
  seen.login = await call('users', 'login', { login: email, password });
  seen.me = await call('users', 'me');
  seen.update = await call('users', 'updateProfile',
    { givenName: 'Estelle', surname: 'Path', customData: { favoriteColor: 'green' } });
  seen.meAfterUpdate = await call('users', 'me');
  seen.logout = await call('users', 'logout');
  seen.meAfterLogout = await call('users', 'me');
  seen.forgot = await call('users', 'forgotPassword', { email });
  seen.change = await call('users', 'changePassword', { sptoken: await mailToken('change', 1), password: newPassword });
  seen.oldPassword = await call('users', 'login', { login: email, password });
  seen.newPassword = await call('users', 'login', { login: email, password: newPassword });
  seen.logoutAgain = await call('users', 'logout');

  seen.apiLogin = await call('api', 'login', { login: email, password: newPassword });
  seen.apiMe = await call('api', 'me');
  seen.apiRefresh = await call('api', 'refreshToken', seen.apiLogin.result && seen.apiLogin.result.refresh_token);
  seen.apiLogout = await call('api', 'logout');
  seen.apiRefreshAfterLogout = await call('api', 'refreshToken', seen.apiLogin.result && seen.apiLogin.result.refresh_token);
  seen.cookies = await page.context().cookies();
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
