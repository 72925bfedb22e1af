// Drives ringchat's web client in headless Chromium (Debian's chromium through
// playwright-core, no browser download) against a running server, with a raw TCP
// IRC client in the same channel: two pages register, messages go both ways, and
// each page is checked for what it shows (members and prefixes, topic, a private
// message's unread count, server time stamps). Run by tests/browser.rs:
//
//   node web_client.mjs http://127.0.0.1:WSPORT/ 127.0.0.1:IRCPORT [SCREENSHOT_DIR]
//
// Prints one JSON line of measurements (the page's bytes and load time) on success;
// any failed check throws, and the exit code is non-zero.
import { chromium } from "playwright-core";
import net from "node:net";
import assert from "node:assert/strict";

const [url, ircAddress, screenshots] = process.argv.slice(2);
if (!url || !ircAddress) {
  console.error("usage: node web_client.mjs WEB_URL IRC_HOST:PORT [SCREENSHOT_DIR]");
  process.exit(2);
}
const TIMEOUT = 15000;
// Lists a phone layout keeps off screen are still in the page.
const ATTACHED = { state: "attached" };

/** A raw IRC client over TCP: send lines, wait for one that matches. */
class TcpClient {
  constructor(address) {
    const [host, port] = address.split(":");
    this.socket = net.connect(Number(port), host);
    this.socket.setEncoding("utf8");
    this.lines = [];
    this.waiters = [];
    let partial = "";
    this.socket.on("data", (chunk) => {
      partial += chunk;
      let end;
      while ((end = partial.indexOf("\r\n")) >= 0) {
        const line = partial.slice(0, end);
        partial = partial.slice(end + 2);
        if (line.startsWith("PING ")) this.send(`PONG ${line.slice(5)}`);
        this.lines.push(line);
        this.check();
      }
    });
  }

  send(line) {
    this.socket.write(`${line}\r\n`);
  }

  check() {
    for (const waiter of [...this.waiters]) {
      const at = this.lines.findIndex(waiter.matches);
      if (at >= 0) {
        const [line] = this.lines.splice(0, at + 1).slice(-1);
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        clearTimeout(waiter.timer);
        waiter.resolve(line);
      }
    }
  }

  /** The next line (skipping others) for which `matches` holds. */
  expect(matches, what) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`TCP client: no line ${what}`)), TIMEOUT);
      this.waiters.push({ matches, resolve, timer });
      this.check();
    });
  }

  close() {
    this.socket.destroy();
  }
}

/** Opens the client in a new page and connects as `nick` to `channel`. */
async function openClient(browser, nick, channel, viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  await page.goto(url, { waitUntil: "load" });
  await page.fill("#nick", nick);
  await page.fill("#channels", channel);
  await page.click("#connect-button");
  await page.waitForSelector(`#buffers li[data-name="${channel}"].active`, ATTACHED);
  await page.waitForSelector(`#members li[data-nick="${nick}"]`, ATTACHED);
  return { page, errors };
}

/** Switches to a buffer as a user would: on a phone the channel list slides in first. */
async function openBuffer(page, name) {
  if (await page.isVisible("#toggle-sidebar")) await page.click("#toggle-sidebar");
  await page.click(`#buffers li[data-name="${name}"]`);
}

/** The texts of a page's message list: "nick text" per line. */
async function messages(page) {
  return page.$$eval("#messages .msg", (items) =>
    items.map((item) => ({
      time: item.querySelector("time")?.textContent ?? "",
      nick: item.querySelector(".nick")?.textContent ?? "",
      text: item.querySelector(".text")?.textContent ?? "",
    })),
  );
}

async function waitForMessage(page, nick, text) {
  await page.waitForFunction(
    ([nick, text]) =>
      [...document.querySelectorAll("#messages .msg")].some(
        (item) => item.querySelector(".nick")?.textContent === nick && item.querySelector(".text")?.textContent === text,
      ),
    [nick, text],
  );
}

async function type(page, text) {
  await page.fill("#input", text);
  await page.press("#input", "Enter");
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const tcp = new TcpClient(ircAddress);
try {
  tcp.send("NICK tcpuser");
  tcp.send("USER tcpuser 0 * :terminal");
  await tcp.expect((line) => line.split(" ")[1] === "001", "001");
  tcp.send("JOIN #lobby");
  await tcp.expect((line) => line.split(" ")[1] === "366", "366 for #lobby");
  tcp.send("TOPIC #lobby :Welcome to the lobby");
  await tcp.expect((line) => line.includes(" TOPIC #lobby "), "TOPIC");

  const desktop = { width: 1000, height: 620 };
  const alice = await openClient(browser, "alice", "#lobby", desktop);
  const load = await alice.page.evaluate(() => {
    const [navigation] = performance.getEntriesByType("navigation");
    const resources = performance.getEntriesByType("resource");
    return {
      page_bytes: [navigation, ...resources].reduce((sum, entry) => sum + (entry.transferSize || 0), 0),
      load_ms: Math.round(navigation.loadEventEnd - navigation.startTime),
    };
  });
  const bob = await openClient(browser, "bob", "#lobby", { width: 390, height: 720 });

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

  if (screenshots) {
    await alice.page.screenshot({ path: `${screenshots}/web-client.png` });
    await bob.page.screenshot({ path: `${screenshots}/web-client-phone.png` });
  }
  assert.deepEqual(alice.errors, [], "alice's page logged errors");
  assert.deepEqual(bob.errors, [], "bob's page logged errors");
  console.log(JSON.stringify(load));
} finally {
  tcp.close();
  await browser.close();
}
