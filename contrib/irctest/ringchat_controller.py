"""irctest controller for ringchat: starts one ringchat for each irctest case.

irctest (https://github.com/progval/irctest) loads a controller by module name
(``--controller ringchat_controller``); ``contrib/irctest/run`` puts this
directory on ``PYTHONPATH`` and passes that name. Only this file and ``run``
belong to ringchat; irctest itself is a separate checkout.

The configuration mirrors what irctest's own controllers give ngIRCd and
InspIRCd: the server name and description the cases expect, one operator
``operuser``/``operpassword``, a TLS listener beside the plaintext one (with a
self-signed certificate made per case), an optional connection password, and
a WebSocket listener when a case asks for one (websocket.py), and
``--utf8-only`` (as Ergo's ``enforce-utf8``: utf8.py's cases run only against a
server that advertises ``UTF8ONLY``). It also turns off what
would only slow the suite down or refuse its clients: flood control (irctest
sends bursts; fake lag would make cases wait, not fail) and the per-source
connection limits (every case connects many clients from 127.0.0.1). Host
cloaking is off (``show-addresses``), as irctest's Ergo controller turns off
Ergo's ``ip-cloaking``: the WHO cases match users by their address. Each case
keeps its state (bans, channel history for CHATHISTORY) in a ``data`` directory
of its own, beside its configuration file.

The binary is ``$RINGCHAT_BIN`` if set, else ``ringchat`` on ``PATH``.
"""

import os
import shutil
import subprocess
from typing import Optional, Set, Type

from irctest import patma
from irctest.cases import BaseServerTestCase
from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.runner import NotImplementedByController
from irctest.specifications import Capabilities, OptionalBehaviors

# The argon2id hash of "operpassword" (`echo operpassword | ringchat --hash-password`):
# ringchat refuses a plaintext password in an [[oper]] block.
OPER_PASSWORD_HASH = (
    "$argon2id$v=19$m=19456,t=2,p=1$lak7Inv14Ykjq7fEPJZuRQ$"
    "qXZ4OIviBf5jH7ArAM0TG9N4fH2jzaOIXTZt2q3j5tQ"
)

TEMPLATE_CONFIG = """\
server-name = "My.Little.Server"
server-info = "test server"
network = "testnet"
listen = ["{hostname}:{port}"]
tls-listen = ["{tls_hostname}:{tls_port}"]
tls-cert = "{pem_path}"
tls-key = "{key_path}"
data-dir = "{data_dir}"
min-password-len = 1
{password_line}
{websocket_line}
utf8-only = true
show-addresses = true
flood-rate = 0.0
exempt = ["0.0.0.0/0", "::/0"]
max-unregistered-per-source = 4096

[[oper]]
name = "operuser"
password = "{oper_password_hash}"
"""


def _toml_string(value: str) -> str:
    """A TOML basic string holding ``value`` (quotes and backslashes escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RingchatController(BaseServerController, DirectoryBasedController):
    software_name = "ringchat"
    # ringchat is its own services (accounts, SASL, NickServ): nothing to start.
    supported_sasl_mechanisms: Set[str] = {"PLAIN"}
    supports_sts = False
    _port_wait_interval = 0.01

    capabilities = frozenset(
        (
            Capabilities.ACCOUNT_NOTIFY,
            Capabilities.ACCOUNT_TAG,
            Capabilities.AWAY_NOTIFY,
            Capabilities.BATCH,
            Capabilities.ECHO_MESSAGE,
            Capabilities.EXTENDED_JOIN,
            Capabilities.EXTENDED_MONITOR,
            Capabilities.LABELED_RESPONSE,
            Capabilities.MESSAGE_TAGS,
            Capabilities.MULTI_PREFIX,
            Capabilities.SERVER_TIME,
            Capabilities.SETNAME,
        )
    )

    optional_behaviors = frozenset(
        (
            OptionalBehaviors.BAN_EXCEPTION_MODE,
            OptionalBehaviors.CAP_REQ_MINUS,
            OptionalBehaviors.INVITE_EXCEPTION_MODE,
            OptionalBehaviors.INVITE_LIST,
            OptionalBehaviors.ELIST_C,
            OptionalBehaviors.ELIST_T,
            OptionalBehaviors.MULTI_JOIN,
            OptionalBehaviors.MULTI_KICK,
            OptionalBehaviors.MULTI_PRIVMSG,
        )
    )

    # What ringchat's 005 must say (isupport.py's testValues checks each).
    isupport = {
        "BOT": "B",
        "CASEMAPPING": "ascii",
        "CHANMODES": "beI,k,l,imnst",
        "ELIST": "CMNTU",
        "EXCEPTS": "e",
        "INVEX": "I",
        "MONITOR": "100",
        "NETWORK": "testnet",
        "PREFIX": "(ov)@+",
        "STATUSMSG": "@+",
        "TARGMAX": patma.ANYSTR,
        "UTF8ONLY": None,
        "WHOX": None,
    }

    def gen_ssl(self) -> None:
        """A self-signed X.509 v3 certificate and its key.

        irctest's own ``gen_ssl`` signs a v1 certificate (``openssl x509 -req``
        without extensions), which rustls refuses (``UnsupportedCertVersion``):
        ``openssl req -x509`` makes a v3 one.
        """
        assert self.directory
        self.key_path = self.directory / "ssl.key"
        self.pem_path = self.directory / "ssl.pem"
        subprocess.check_output(
            [
                self.openssl_bin,
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=My.Little.Server",
                "-keyout",
                self.key_path,
                "-out",
                self.pem_path,
            ],
            stderr=subprocess.DEVNULL,
        )

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: Optional[str],
        ssl: bool,
        run_services: bool,
        faketime: Optional[str],
        websocket_hostname: Optional[str],
        websocket_port: Optional[int],
    ) -> None:
        assert self.proc is None
        self.port = port
        self.hostname = hostname
        self.create_config()
        assert self.directory
        self.gen_ssl()

        (unused_hostname, unused_port) = self.get_hostname_and_port()
        if ssl:
            (tls_hostname, tls_port) = (hostname, port)
            (hostname, port) = (unused_hostname, unused_port)
        else:
            (tls_hostname, tls_port) = (unused_hostname, unused_port)

        password_line = (
            "password = {}".format(_toml_string(password)) if password else ""
        )
        # websocket.py's cases: IRC over WebSocket on a plain HTTP listener.
        websocket_line = (
            "websocket-listen = [{}]".format(
                _toml_string("{}:{}".format(websocket_hostname, websocket_port))
            )
            if websocket_port is not None
            else ""
        )
        config_path = self.directory / "ringchat.toml"
        with self.open_file("ringchat.toml", "w") as fd:
            fd.write(
                TEMPLATE_CONFIG.format(
                    hostname=hostname,
                    port=port,
                    tls_hostname=tls_hostname,
                    tls_port=tls_port,
                    pem_path=self.pem_path,
                    key_path=self.key_path,
                    password_line=password_line,
                    websocket_line=websocket_line,
                    data_dir=self.directory / "data",
                    oper_password_hash=OPER_PASSWORD_HASH,
                )
            )

        if faketime and shutil.which("faketime"):
            faketime_cmd = ["faketime", "-f", faketime]
            self.faketime_enabled = True
        else:
            faketime_cmd = []

        binary = os.environ.get("RINGCHAT_BIN", "ringchat")
        self.proc = self.execute(
            [*faketime_cmd, binary, "--config", config_path],
            proc_name="ringchat",
        )


    def wait_for_services(self) -> None:
        """Nothing to wait for: the accounts are the server's own."""

    def registerUser(
        self,
        case: BaseServerTestCase,  # type: ignore
        username: str,
        password: Optional[str] = None,
    ) -> None:
        """Registers ``username`` as an account through NickServ, as a user would."""
        assert password
        client = case.addClient(show_io=False)
        case.sendLine(client, "NICK " + username)
        case.sendLine(client, "USER r e g :user")
        while case.getRegistrationMessage(client).command != "001":
            pass
        case.getMessages(client)
        case.sendLine(client, "NS REGISTER " + password)
        while case.getMessage(client).command != "900":
            pass
        case.sendLine(client, "QUIT")
        case.assertDisconnected(client)


def get_irctest_controller_class() -> Type[RingchatController]:
    return RingchatController
