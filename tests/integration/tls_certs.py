"""Test certificates, made by the `openssl` command in a test's directory (no private key is
ever committed): a CA, a server certificate for localhost, client certificates (good, from
another CA, revoked and listed in a CRL, expired), each as PEM files."""

import os
import subprocess


def _run(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


class Certs:
    def __init__(self, directory):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.ca("ca", "wsagent test CA")
        self.ca("other-ca", "another CA")
        self.server("server", "localhost")
        self.client("client", "dev-1", san="DNS:dev-1.devices.example,URI:urn:dev:dev-1,"
                                           "email:dev-1@devices.example")
        self.client("stranger", "dev-2", ca="other-ca")
        self.client("revoked", "dev-3")
        self.client("expired", "dev-4", expired=True)
        self.crl("crl", revoke=["revoked"])

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name):
        _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", f"{name}.key", cwd=self.dir)

    def ca(self, name, cn):
        self._key(name)
        _run("req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.pem", "-days", "30",
             "-subj", f"/CN={cn}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        # What `openssl ca` keeps of the certificates it signs (for the CRL).
        db = os.path.join(self.dir, f"{name}.db")
        os.makedirs(db, exist_ok=True)
        open(os.path.join(db, "index.txt"), "w").close()
        with open(os.path.join(db, "index.txt.attr"), "w") as f:
            f.write("unique_subject = no\n")
        for counter in ("crlnumber", "serial"):
            with open(os.path.join(db, counter), "w") as f:
                f.write("1000\n")
        with open(os.path.join(db, "ca.cnf"), "w") as f:
            f.write(f"""[ca]
default_ca = this
[this]
database = {db}/index.txt
crlnumber = {db}/crlnumber
serial = {db}/serial
new_certs_dir = {db}
policy = anything
certificate = {self.dir}/{name}.pem
private_key = {self.dir}/{name}.key
default_md = sha256
default_crl_days = 30
[anything]
commonName = supplied
""")

    def _sign(self, name, cn, ca, ext, expired=False, days=30):
        self._key(name)
        _run("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
             cwd=self.dir)
        with open(self.path(f"{name}.ext"), "w") as f:
            f.write(ext)
        dates = (["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"]
                 if expired else ["-days", str(days)])
        _run("ca", "-batch", "-notext", "-config", os.path.join(self.dir, f"{ca}.db", "ca.cnf"),
             "-in", f"{name}.csr", "-out", f"{name}.pem", *dates, "-extfile", f"{name}.ext",
             cwd=self.dir)

    def server(self, name, cn, ca="ca", days=30, ext=""):
        self._sign(name, cn, ca, "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                 "extendedKeyUsage=serverAuth\n" + ext, days=days)

    def client(self, name, cn, ca="ca", san=None, expired=False):
        ext = "extendedKeyUsage=clientAuth\n"
        if san:
            ext += f"subjectAltName={san}\n"
        self._sign(name, cn, ca, ext, expired)

    def crl(self, name, revoke=(), ca="ca"):
        cnf = os.path.join(self.dir, f"{ca}.db", "ca.cnf")
        for r in revoke:
            _run("ca", "-config", cnf, "-revoke", f"{r}.pem", cwd=self.dir)
        _run("ca", "-config", cnf, "-gencrl", "-out", f"{name}.pem", cwd=self.dir)

    def fingerprint(self, name):
        out = subprocess.run(["openssl", "x509", "-in", f"{name}.pem", "-noout", "-fingerprint",
                              "-sha256"], cwd=self.dir, check=True, capture_output=True,
                             text=True).stdout
        return out.strip().split("=")[1].replace(":", "").lower()
