// The web client's accounts and history in headless Chromium, against a server with a
// data directory and a raw TCP client ("teller") in #history: a page registers an
// account (REGISTER), logs in again with SASL PLAIN after a dropped connection and
// after a reload; wrong passwords and taken names are said on the form; the page
// catches up after a reconnect (CHATHISTORY AFTER) showing each message once,
// "load older" brings the page before (CHATHISTORY BEFORE), and a private
// conversation opened after a reload shows what was said in it, kept for carol's
// account. Run by tests/browser.rs:
//
//   node accounts_history.mjs http://127.0.0.1:WSPORT/ 127.0.0.1:IRCPORT
//
// Any failed check throws, and the exit code is non-zero.
import assert from "node:assert/strict";
import {
  ATTACHED,
  DESKTOP,
  PHONE,
  messages,
  openClient,
  openPage,
  submitForm,
  waitForMessage,
  withBrowser,
  scenarioArguments,
  type,
} from "./harness.mjs";

const { url, ircAddress } = scenarioArguments("accounts_history.mjs");
const PASSWORD = "correct horse battery";

/** The texts of a page's messages from `nick`, in the order shown. */
async function textsFrom(page, nick) {
  return (await messages(page)).filter((entry) => entry.nick === nick).map((entry) => entry.text);
}

/** `what 1` .. `what count`. */
function numbered(what, count, from = 1) {
  return Array.from({ length: count }, (_, at) => `${what} ${from + at}`);
}

/** The server says `nick` is logged in to `account` (WHOIS 330). */
async function expectLoggedIn(tcp, nick, account) {
  tcp.send(`WHOIS ${nick}`);
  await tcp.expect((line) => line.split(" ")[1] === "330" && line.includes(` ${nick} ${account} :`), `330 for ${nick}`);
}

/** A page whose connect form is answered with a failure: returns what the form says. */
async function refusedLogin(browser, login) {
  const { page, errors } = await openPage(browser, url, PHONE);
  await submitForm(page, { channel: "#history", ...login });
  await page.waitForSelector("#connect-status.error");
  assert.equal(await page.isVisible("#connect"), true, "the form is shown again");
  assert.deepEqual(errors, []);
  return page.textContent("#connect-status");
}

await withBrowser(ircAddress, async (browser, tcp) => {
  // 60 messages before anyone opens the page: more than the page the client asks for.
  await tcp.register("teller", "#history");
  for (const text of numbered("old", 60)) tcp.send(`PRIVMSG #history :${text}`);
  await tcp.barrier();

  // Registration: the account is carol's nick; the page is logged in to it at once.
  const carol = await openClient(browser, url, "carol", "#history", DESKTOP, { password: PASSWORD, register: true });
  await carol.page.waitForSelector('#connection:text("as carol, logged in")');
  await expectLoggedIn(tcp, "carol", "carol");

  // Joining shows the latest 50; "load older" the 10 before them, and then there is
  // nothing older to load.
  await waitForMessage(carol.page, "teller", "old 60");
  assert.deepEqual(await textsFrom(carol.page, "teller"), numbered("old", 50, 11));
  await carol.page.click("#load-older");
  await waitForMessage(carol.page, "teller", "old 1");
  assert.deepEqual(await textsFrom(carol.page, "teller"), numbered("old", 60));
  await carol.page.waitForSelector("#load-older", { state: "hidden" });

  // Failures are said on the form: a wrong password, a name already registered.
  assert.match(await refusedLogin(browser, { nick: "carol", password: "wrong password" }), /^Login to account carol failed: /);
  assert.match(
    await refusedLogin(browser, { nick: "carol", password: "another password", register: true }),
    /^Registration failed: Account already exists$/,
  );

  // A private message opens a conversation, which the server keeps for carol's
  // account (teller is not logged in: the conversation is carol's to read).
  tcp.send("PRIVMSG carol :psst");
  await carol.page.waitForSelector('#buffers li[data-name="teller"]', ATTACHED);

  // The connection drops and stays down while teller talks; when it is back (logged in
  // again with SASL), the page shows what was said while away, once each.
  await carol.page.evaluate(() => {
    state.retryDelay = 3600 * 1000; // the test reconnects it below
    state.socket.close(1000, "network change");
  });
  await tcp.expect((line) => line.startsWith(":carol!") && line.includes(" QUIT "), "carol's QUIT");
  for (const text of numbered("while away", 3)) tcp.send(`PRIVMSG #history :${text}`);
  await tcp.barrier();
  await carol.page.evaluate(() => connect());
  await tcp.expect((line) => line.startsWith(":carol!") && line.endsWith(" JOIN #history"), "carol back in #history");
  await waitForMessage(carol.page, "teller", "while away 3");
  tcp.send("PRIVMSG #history :welcome back");
  await waitForMessage(carol.page, "teller", "welcome back");
  assert.deepEqual(await textsFrom(carol.page, "teller"), [
    ...numbered("old", 60),
    ...numbered("while away", 3),
    "welcome back",
  ]);
  await carol.page.waitForSelector('#connection:text("logged in")');
  await expectLoggedIn(tcp, "carol", "carol");
  // The conversation caught up too (nothing new in it: a private message to carol
  // while she is away is refused, 401), with "psst" once and no error line.
  await carol.page.waitForFunction(() => buffer("teller").history.pending === null);
  const conversation = await carol.page.evaluate(() => ({
    texts: buffer("teller").lines.filter((line) => line.msgid).map((line) => line.text),
    errors: buffer(SERVER_BUFFER).lines.filter((line) => line.kind === "error").map((line) => line.text),
  }));
  assert.deepEqual(conversation.texts, ["psst"]);
  assert.deepEqual(conversation.errors.filter((text) => text.startsWith("history")), []);

  // A reload: the form again (nick remembered, password not); SASL logs in, and the
  // channel shows its latest page, each message once.
  await carol.page.reload({ waitUntil: "load" });
  assert.equal(await carol.page.inputValue("#nick"), "carol");
  assert.equal(await carol.page.inputValue("#password"), "");
  await submitForm(carol.page, { nick: "carol", channel: "#history", password: PASSWORD });
  await carol.page.waitForSelector('#connection:text("logged in")');
  await waitForMessage(carol.page, "teller", "welcome back");
  assert.deepEqual(await textsFrom(carol.page, "teller"), [
    ...numbered("old", 46, 15),
    ...numbered("while away", 3),
    "welcome back",
  ]);
  // The reloaded page has no conversations; opening one shows its history.
  await type(carol.page, "/query teller");
  await waitForMessage(carol.page, "teller", "psst");
  assert.deepEqual(await textsFrom(carol.page, "teller"), ["psst"]);
  assert.deepEqual(carol.errors, [], "carol's page logged errors");
});
