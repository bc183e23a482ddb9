// Logs in through postern's HTML login page in headless Chromium, the way a person would:
// open a protected page, get sent to the login page, fill in the form, land back on the page.
// Usage: node login.mjs BASE_URL USERNAME PASSWORD   (prints one JSON line with what it saw)
import { chromium } from 'playwright-core';

const [base, username, password] = process.argv.slice(2);
const target = `${base}/reports/q3?year=2026`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  await page.goto(target);
  const loginUrl = page.url();
  const title = await page.title();
  const usernameLabel = await page.locator('label[for=username]').textContent();
  await page.getByLabel('Username or email').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(target, { timeout: 15000 });
  const echoed = JSON.parse(await page.locator('body').innerText());
  const cookies = await page.context().cookies();
  console.log(JSON.stringify({ loginUrl, title, usernameLabel, finalUrl: page.url(), echoed, cookies }));
} finally {
  await browser.close();
}
