// What the browser scenarios share: headless Chromium (Debian's chromium through
// playwright-core, no browser download), a raw TCP IRC client, and helpers that work
// the web client's page as a user would. Each scenario script takes its arguments
// from `scenarioArguments` and runs under `withBrowser`.
import { chromium } from "playwright-core";
import net from "node:net";

export const TIMEOUT = 15000;
// Lists a phone layout keeps off screen are still in the page.
export const ATTACHED = { state: "attached" };
export const DESKTOP = { width: 1000, height: 620 };
export const PHONE = { width: 390, height: 720 };

/** `WEB_URL IRC_HOST:PORT [SCREENSHOT_DIR]` from the command line, or exits with usage. */
export function scenarioArguments(script) {
  const [url, ircAddress, screenshots] = process.argv.slice(2);
  if (!url || !ircAddress) {
    console.error(`usage: node ${script} WEB_URL IRC_HOST:PORT [SCREENSHOT_DIR]`);
    process.exit(2);
  }
  return { url, ircAddress, screenshots };
}

/** Runs `scenario(browser, tcp)` with a browser and a TCP client, closing both after. */
export async function withBrowser(ircAddress, scenario) {
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
    await scenario(browser, tcp);
  } finally {
    tcp.close();
    await browser.close();
  }
}

/** A raw IRC client over TCP: send lines, wait for one that matches. */
export class TcpClient {
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

  /** Registers as `nick` and joins `channel`. */
  async register(nick, channel) {
    this.send(`NICK ${nick}`);
    this.send(`USER ${nick} 0 * :terminal`);
    await this.expect((line) => line.split(" ")[1] === "001", "001");
    this.send(`JOIN ${channel}`);
    await this.expect((line) => line.split(" ")[1] === "366", `366 for ${channel}`);
  }

  /** Waits until the server has handled everything sent before (PING and its PONG). */
  async barrier() {
    this.send("PING :barrier");
    await this.expect((line) => line.includes(" PONG ") && line.endsWith(" :barrier"), "PONG :barrier");
  }

  close() {
    this.socket.destroy();
  }
}

/** A new page (its own storage) on the client, with its errors collected. */
export async function openPage(browser, url, viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  await page.goto(url, { waitUntil: "load" });
  return { page, errors };
}

/** Fills the connect form and submits it; `password` and `register` are optional. */
export async function submitForm(page, { nick, channel, password = "", register = false }) {
  await page.fill("#nick", nick);
  await page.fill("#channels", channel);
  await page.fill("#password", password);
  await page.setChecked("#register", register);
  await page.click("#connect-button");
}

/** Opens the client in a new page and connects as `nick` to `channel`. */
export async function openClient(browser, url, nick, channel, viewport, login = {}) {
  const client = await openPage(browser, url, viewport);
  await submitForm(client.page, { nick, channel, ...login });
  await client.page.waitForSelector(`#buffers li[data-name="${channel}"].active`, ATTACHED);
  await client.page.waitForSelector(`#members li[data-nick="${nick}"]`, ATTACHED);
  return client;
}

/** Switches to a buffer as a user would: on a phone the channel list slides in first. */
export async function openBuffer(page, name) {
  if (await page.isVisible("#toggle-sidebar")) await page.click("#toggle-sidebar");
  await page.click(`#buffers li[data-name="${name}"]`);
}

/** The lines of a page's message list: time, nick and text. */
export async function messages(page) {
  return page.$$eval("#messages .msg", (items) =>
    items.map((item) => ({
      time: item.querySelector("time")?.textContent ?? "",
      nick: item.querySelector(".nick")?.textContent ?? "",
      text: item.querySelector(".text")?.textContent ?? "",
    })),
  );
}

export async function waitForMessage(page, nick, text) {
  await page.waitForFunction(
    ([nick, text]) =>
      [...document.querySelectorAll("#messages .msg")].some(
        (item) => item.querySelector(".nick")?.textContent === nick && item.querySelector(".text")?.textContent === text,
      ),
    [nick, text],
  );
}

export async function type(page, text) {
  await page.fill("#input", text);
  await page.press("#input", "Enter");
}
