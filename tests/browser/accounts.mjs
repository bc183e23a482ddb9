// The account pages in headless Chromium, the way a person uses them, with the links read out of
// the mail postern wrote to its outbox.
// Usage: node accounts.mjs FLOW BASE_URL OUTBOX_DIR USERNAME PASSWORD NEW_PASSWORD
//   FLOW = reset    forgot password -> mail -> reset page -> sign in with the new password
//          invite   verification mail -> set the first password -> signed in
//          expired  sign in with an expired password -> change page -> the page asked for
// Prints one JSON line with what it saw.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [flow, base, outbox, username, password, newPassword] = process.argv.slice(2);

async function mailLink(endpoint, count) {
  const deadline = Date.now() + 20000;
  for (;;) {
    let names = [];
    try { names = readdirSync(outbox).filter((n) => n.endsWith('.eml')).sort(); } catch { /* not yet */ }
    const texts = names.map((n) => readFileSync(join(outbox, n), 'utf8')
      .replace(/=\r?\n/g, '').replace(/=3D/g, '='));
    const links = texts.flatMap((t) => t.match(new RegExp(`https?://[^\\s"<>]*/_postern/${endpoint}\\?token=[A-Za-z0-9_-]{43}`, 'g')) || []);
    if (links.length >= count) {
      // the link names the configured public URL; this test server listens elsewhere
      const url = new URL(links[count - 1]);
      return `${base}${url.pathname}${url.search}`;
    }
    if (Date.now() > deadline) throw new Error(`no ${endpoint} link in ${outbox}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const seen = { flow, urls: [], titles: [] };
// What the page shows once it has loaded (a click only starts a navigation).
const note = async (page) => {
  await page.waitForLoadState('load');
  seen.urls.push(page.url());
  seen.titles.push(await page.title());
};
const page = await browser.newPage();
try {
  if (flow === 'reset') {
    await page.goto(`${base}/_postern/login`);
    await page.getByRole('link', { name: 'Forgot your password?' }).click();
    await page.waitForURL(/\/_postern\/forgot$/, { timeout: 15000 });
    await note(page);
    await page.getByLabel('Username or email').fill(username);
    await page.getByRole('button', { name: 'Send the link' }).click();
    await page.getByRole('status').waitFor({ timeout: 15000 });
    await note(page);
    seen.sentMessage = await page.locator('[role=status]').innerText();
    await page.goto(await mailLink('reset', 1));
    await note(page);
    await page.getByLabel('New password').fill(newPassword);
    await page.getByLabel('Repeat it').fill(newPassword);
    await page.getByRole('button', { name: 'Save the new password' }).click();
    await page.getByRole('status').waitFor({ timeout: 15000 });
    await note(page);
    await page.getByRole('link', { name: 'Sign in' }).click();
    await page.getByLabel('Username or email').fill(username);
    await page.getByLabel('Password').fill(newPassword);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${base}/`, { timeout: 15000 });
  } else if (flow === 'invite') {
    await page.goto(await mailLink('verify', 1));
    await note(page);
    await page.getByLabel('New password').fill(newPassword);
    await page.getByLabel('Repeat it').fill(newPassword);
    await page.getByRole('button', { name: 'Set password and sign in' }).click();
    await page.waitForURL(`${base}/`, { timeout: 15000 });
  } else if (flow === 'expired') {
    await page.goto(`${base}/reports/q4`);
    await note(page);
    await page.getByLabel('Username or email').fill(username);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/_postern\/expired/, { timeout: 15000 });
    await note(page);
    await page.getByLabel('Current password').fill(password);
    await page.getByLabel('New password').fill(newPassword);
    await page.getByLabel('Repeat it').fill(newPassword);
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.waitForURL(`${base}/reports/q4`, { timeout: 15000 });
  } else {
    throw new Error(`unknown flow ${flow}`);
  }
  await note(page);
  seen.echoed = JSON.parse(await page.locator('body').innerText());
  console.log(JSON.stringify(seen));
} catch (e) {
  console.error(`failed at ${page.url()} after ${JSON.stringify(seen)}:\n${await page.locator('body').innerText().catch(() => '')}`);
  throw e;
} finally {
  await browser.close();
}
