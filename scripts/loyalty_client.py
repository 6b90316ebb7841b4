#!/usr/bin/env python3
"""An independent client of the loyalty API: its own P-256 keys (Python `cryptography`), its own
HTTP (urllib), nothing from Beaufort's code. It checks, against a running consortium:

1. a merchant issues a ticket to a customer;
2. the customer redeems it concurrently at two other merchants: exactly one 200 and one 409;
3. every member then returns the same ticket state;
4. a forged signature gets 403, an unknown ticket 404;
5. the redemption's receipt verifies offline with `beaufort verify --network`.

Usage: loyalty_client.py --beaufort BIN --token TOKEN URL_A URL_B URL_C [URL ...]
Exit status 0 if every check passed; the failing check is printed otherwise.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

DEADLINE = 120.0


def request(method, url, body=None, token=None):
    """Returns (status, parsed JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=DEADLINE) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def check(condition, what):
    if not condition:
        print("FAILED: " + what, file=sys.stderr)
        sys.exit(1)
    print("ok: " + what)


def eventually(what, probe):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.1)
    check(False, what)


class Customer:
    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        self.pk = raw.hex()

    def sign(self, message):
        """ECDSA P-256 SHA-256 as WebCrypto returns it: 64 bytes r || s."""
        r, s = decode_dss_signature(self.key.sign(message, ec.ECDSA(hashes.SHA256())))
        return (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex()


def signed_redeem(url, ticket, customer, signer=None):
    status, challenge = request("GET", f"{url}/v1/loyalty/tickets/{ticket}/challenge?action=redeem")
    if status != 200:
        return status, challenge
    message = bytes.fromhex(challenge["challenge_hex"])
    signature = (signer or customer).sign(message)
    return request("POST", f"{url}/v1/loyalty/tickets/{ticket}/redeem",
                   {"view": challenge["view"], "amount": challenge["amount"], "signature": signature})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--beaufort", required=True, help="the beaufort binary (for verify)")
    parser.add_argument("--token", required=True, help="operator token of the first member")
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()
    check(len(args.urls) >= 3, "at least three members given")
    a, b, c = args.urls[:3]
    customer = Customer()

    status, ticket = request("POST", f"{a}/v1/loyalty/tickets",
                             {"owner": customer.pk, "points": 120}, token=args.token)
    check(status == 200, f"merchant A issues 120 points (got {status} {ticket})")
    tid = ticket["id"]
    for url in (b, c):
        eventually(f"{url} knows the ticket",
                   lambda url=url: request("GET", f"{url}/v1/loyalty/tickets/{tid}")[0] == 200)

    status, wallet = request("GET", f"{b}/v1/loyalty/tickets?owner={customer.pk}")
    check(status == 200 and wallet["balance"] == 120, f"the balance is 120 ({wallet})")

    results = {}

    def redeem_at(url):
        results[url] = signed_redeem(url, tid, customer)

    threads = [threading.Thread(target=redeem_at, args=(url,)) for url in (b, c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(results[url][0] for url in (b, c))
    check(statuses == [200, 409], f"concurrent redemptions at B and C: one 200, one 409 (got {results})")
    winner = next(url for url in (b, c) if results[url][0] == 200)
    won = results[winner][1]
    check(won["status"] == "redeemed" and won["points"] == 0, "the winner spent the whole ticket")

    # `round` is the round of the certificate a member holds. Under contention the same value can
    # gather a COMMIT quorum in two rounds, so members may hold equally valid certificates from
    # different rounds: compare the ticket, not the proof.
    def ticket(t):
        return {k: v for k, v in t.items() if k != "round"}

    def same_everywhere():
        states = [request("GET", f"{url}/v1/loyalty/tickets/{tid}") for url in args.urls]
        if all(s == 200 and ticket(t) == ticket(won) for s, t in states):
            return True
        return False

    eventually("every member returns the same redeemed ticket", same_everywhere)

    status, again = signed_redeem(b, tid, customer)
    check(status == 409, f"a second redemption is refused with 409 (got {status} {again})")

    status, second = request("POST", f"{a}/v1/loyalty/tickets",
                             {"owner": customer.pk, "points": 10}, token=args.token)
    check(status == 200, "a second ticket is issued")
    eventually("B knows the second ticket",
               lambda: request("GET", f"{b}/v1/loyalty/tickets/{second['id']}")[0] == 200)
    status, forged = signed_redeem(b, second["id"], customer, signer=Customer())
    check(status == 403, f"a forged signature gets 403 (got {status} {forged})")
    status, _ = request("GET", f"{b}/v1/loyalty/tickets/{'0' * 32}")
    check(status == 404, f"an unknown ticket gets 404 (got {status})")
    status, _ = request("POST", f"{a}/v1/loyalty/tickets", {"owner": customer.pk, "points": 5})
    check(status == 401, f"issuing without the operator token gets 401 (got {status})")

    with tempfile.TemporaryDirectory() as tmp:
        status, receipt = request("GET", f"{winner}/v1/receipts/loyalty/ticket/{tid}")
        check(status == 200, "the receipt is served")
        status, network = request("GET", f"{winner}/v1/network")
        check(status == 200, "the network description is served")
        with open(f"{tmp}/receipt.json", "w") as f:
            json.dump(receipt, f)
        with open(f"{tmp}/network.json", "w") as f:
            json.dump(network, f)
        out = subprocess.run([args.beaufort, "verify", "--network", f"{tmp}/network.json",
                              f"{tmp}/receipt.json"], capture_output=True, text=True)
        check(out.returncode == 0, f"beaufort verify accepts the receipt ({out.stdout}{out.stderr})")
        receipt["value_hex"] = receipt["value_hex"].replace("3a30", "3a31", 1)
        with open(f"{tmp}/tampered.json", "w") as f:
            json.dump(receipt, f)
        out = subprocess.run([args.beaufort, "verify", "--network", f"{tmp}/network.json",
                              f"{tmp}/tampered.json"], capture_output=True, text=True)
        check(out.returncode != 0, "beaufort verify refuses a tampered receipt")
    print("all checks passed")


if __name__ == "__main__":
    main()
