// Drives the admin console in headless Chromium with JavaScript turned off (the console must
// work without it): sign in, find a user, change roles, revoke a session, import a CSV, delete a
// user, and take a screenshot of every page. Every request the pages make is recorded so the
// test can check that nothing came from another origin.
// Usage: node console.mjs BASE_URL ADMIN PASSWORD USER CSV_FILE SCREENSHOT_DIR
import { chromium } from 'playwright-core';
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const [base, admin, password, username, csvFile, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const seen = { requests: [], screenshots: {}, notices: [] };
const notice = async (page) => {
  const text = (await page.locator('p.notice, p.error').first().textContent()).trim();
  seen.notices.push(text);
  return text;
};
const shoot = async (page, name) => {
  const file = join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  seen.screenshots[name] = statSync(file).size;
};
try {
  const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on('request', (r) => seen.requests.push(r.url()));

  // Signing in: the console sends the browser to the login page and back.
  await page.goto(`${base}/_postern/console/`);
  seen.loginUrl = page.url();
  await page.getByLabel('Username or email').fill(admin);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/_postern/console/`);
  seen.overviewCharts = await page.locator('figure.chart svg').count();
  await shoot(page, 'overview');

  // The keyboard reaches the skip link first, then the navigation.
  await page.keyboard.press('Tab');
  seen.firstFocus = await page.evaluate(() => document.activeElement && document.activeElement.textContent);

  // Find the user.
  await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Users' }).click();
  await page.getByLabel('Search').fill(username);
  await page.getByRole('button', { name: 'Filter' }).click();
  seen.searchRows = await page.locator('table tbody tr').count();
  await shoot(page, 'users');
  await page.getByRole('link', { name: username, exact: true }).click();
  seen.userTitle = await page.locator('h1').textContent();

  // Roles: grant one, take one away.
  await page.getByLabel('Grant a role').selectOption('editors');
  await page.getByRole('button', { name: 'Add role' }).click();
  seen.addRole = await notice(page);
  await page.getByRole('button', { name: 'Remove staff' }).click();
  seen.removeRole = await notice(page);
  seen.roleChips = await page.locator('section[aria-labelledby=roles-h] .role-chip').allTextContents();

  // Sessions: revoke the user's one session.
  seen.sessionsBefore = await page.locator('table:has(caption:text("sessions")) tbody tr').count();
  await page.getByRole('button', { name: 'Revoke', exact: true }).first().click();
  seen.revoke = await notice(page);
  seen.sessionsAfter = await page.locator('table:has(caption:text("sessions")) tbody tr').count();
  await shoot(page, 'user');

  // Import: check the file, see the bad rows, import the good ones.
  await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Import' }).click();
  await shoot(page, 'import');
  await page.getByLabel('Spreadsheet').setInputFiles(csvFile);
  await page.getByRole('button', { name: 'Check the file' }).click();
  seen.preview = (await page.locator('p[role=status]').first().textContent()).trim();
  seen.previewProblems = await page.locator('td.problems').allTextContents();
  await shoot(page, 'import-preview');
  await page.getByRole('button', { name: /^Import \d+ user/ }).click();
  seen.imported = await notice(page);
  await shoot(page, 'import-done');

  // The other pages.
  for (const [name, path] of [['roles', 'roles'], ['events', 'events'], ['new-user', 'users/new'], ['files', 'files']]) {
    await page.goto(`${base}/_postern/console/${path}`);
    await shoot(page, name);
  }

  // Delete an imported user, typing the username to confirm.
  await page.goto(`${base}/_postern/console/users?q=ada`);
  await page.getByRole('link', { name: 'ada@example.com', exact: true }).click();
  await page.getByLabel(/Type the username/).fill('ada@example.com');
  await page.getByRole('button', { name: 'Delete user' }).click();
  seen.deleted = await notice(page);
  seen.afterDeleteUrl = page.url();

  // On a phone: nothing wider than the screen but the tables, which scroll.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/_postern/console/users`);
  seen.phoneOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await shoot(page, 'users-phone');
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
