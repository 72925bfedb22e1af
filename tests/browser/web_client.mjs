// Drives ringchat's web client in headless Chromium (Debian's chromium through
// playwright-core, no browser download) against a running server, with a raw TCP
// IRC client in the same channel: two pages register, messages go both ways, and
// each page is checked for what it shows (members and prefixes, topic, a private
// message's unread count, server time stamps). Helpers are in harness.mjs; the
// accounts and history scenario is accounts_history.mjs. Run by tests/browser.rs:
//
//   node web_client.mjs http://127.0.0.1:WSPORT/ 127.0.0.1:IRCPORT [SCREENSHOT_DIR]
//
// Prints one JSON line of measurements (the page's bytes and load time) on success;
// any failed check throws, and the exit code is non-zero.
import assert from "node:assert/strict";
import {
  ATTACHED,
  DESKTOP,
  PHONE,
  messages,
  openBuffer,
  openClient,
  scenarioArguments,
  type,
  waitForMessage,
  withBrowser,
} from "./harness.mjs";

const { url, ircAddress, screenshots } = scenarioArguments("web_client.mjs");

await withBrowser(ircAddress, async (browser, tcp) => {
  await tcp.register("tcpuser", "#lobby");
  tcp.send("TOPIC #lobby :Welcome to the lobby");
  await tcp.expect((line) => line.includes(" TOPIC #lobby "), "TOPIC");

  const alice = await openClient(browser, url, "alice", "#lobby", DESKTOP);
  const load = await alice.page.evaluate(() => {
    const [navigation] = performance.getEntriesByType("navigation");
    const resources = performance.getEntriesByType("resource");
    return {
      page_bytes: [navigation, ...resources].reduce((sum, entry) => sum + (entry.transferSize || 0), 0),
      load_ms: Math.round(navigation.loadEventEnd - navigation.startTime),
    };
  });
  const bob = await openClient(browser, url, "bob", "#lobby", PHONE);

  // The member list: the channel's creator (the TCP user) is an operator, listed first.
  await alice.page.waitForSelector('#members li[data-nick="bob"]');
  const members = await alice.page.$$eval("#members li", (items) => items.map((item) => item.textContent));
  assert.deepEqual(members, ["@tcpuser", "alice", "bob"]);
  assert.equal(await alice.page.textContent("#topic"), "Welcome to the lobby");

  // Browser -> TCP and the other browser.
  await type(alice.page, "hello from alice");
  await tcp.expect((line) => line === ":alice!~alice@127.0.0.1 PRIVMSG #lobby :hello from alice", "from alice");
  await waitForMessage(bob.page, "alice", "hello from alice");
  await waitForMessage(alice.page, "alice", "hello from alice");

  // TCP -> both browsers, with the server's time stamp shown as HH:MM.
  tcp.send("PRIVMSG #lobby :hello browsers");
  await waitForMessage(alice.page, "tcpuser", "hello browsers");
  await waitForMessage(bob.page, "tcpuser", "hello browsers");
  const shown = (await messages(bob.page)).find((entry) => entry.text === "hello browsers");
  assert.match(shown.time, /^\d{1,2}:\d{2}/);

  // A private message to bob: a new conversation with an unread count of 1.
  tcp.send("PRIVMSG bob :psst, bob");
  await bob.page.waitForSelector('#buffers li[data-name="tcpuser"] .unread:text("1")', ATTACHED);
  await openBuffer(bob.page, "tcpuser");
  await waitForMessage(bob.page, "tcpuser", "psst, bob");
  await type(bob.page, "loud and clear");
  await tcp.expect((line) => line === ":bob!~bob@127.0.0.1 PRIVMSG tcpuser :loud and clear", "bob's reply");

  // /commands: an action, and a join that opens the new channel.
  await openBuffer(bob.page, "#lobby");
  await type(bob.page, "/me waves");
  await tcp.expect((line) => line === ":bob!~bob@127.0.0.1 PRIVMSG #lobby :\x01ACTION waves\x01", "bob's action");
  await waitForMessage(alice.page, "* bob", "waves");
  await type(alice.page, "/join #second");
  await alice.page.waitForSelector('#buffers li[data-name="#second"].active');
  await alice.page.waitForSelector('#members li[data-nick="alice"]');
  assert.equal(await alice.page.textContent('#members li[data-nick="alice"] .prefix'), "@");
  await type(alice.page, "/part");
  await alice.page.waitForSelector('#buffers li[data-name="#second"]', { state: "detached" });

  // Messages in a channel not shown count as unread.
  await openBuffer(alice.page, "*server*");
  tcp.send("PRIVMSG #lobby :are you there?");
  await alice.page.waitForSelector('#buffers li[data-name="#lobby"] .unread:text("1")');
  await openBuffer(alice.page, "#lobby");

  // A dropped connection: the client reconnects on its own and joins its channels
  // again (the server saw the close and freed the nick first).
  await alice.page.evaluate(() => state.socket.close(1000, "network change"));
  await tcp.expect((line) => line.startsWith(":alice!") && line.includes(" QUIT "), "alice's QUIT");
  await tcp.expect((line) => line === ":alice!~alice@127.0.0.1 JOIN #lobby", "alice back in #lobby");
  await alice.page.waitForSelector('#members li[data-nick="tcpuser"]');
  tcp.send("PRIVMSG #lobby :welcome back");
  await waitForMessage(alice.page, "tcpuser", "welcome back");
  // The catch-up after the reconnect (CHATHISTORY) repeats nothing already shown.
  const texts = (await messages(alice.page)).filter((entry) => entry.nick).map((entry) => entry.text);
  assert.deepEqual(texts, [...new Set(texts)], "a message shown twice after the reconnect");

  if (screenshots) {
    await alice.page.screenshot({ path: `${screenshots}/web-client.png` });
    await bob.page.screenshot({ path: `${screenshots}/web-client-phone.png` });
  }
  assert.deepEqual(alice.errors, [], "alice's page logged errors");
  assert.deepEqual(bob.errors, [], "bob's page logged errors");
  console.log(JSON.stringify(load));
});
