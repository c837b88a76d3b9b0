"""Keys for the sandbox payment gateways, generated once per installation.

Real RSA keys and a real APIv3 key, so that the product signs, verifies and
decrypts exactly as it does against WeChat Pay and Alipay. The sandbox keeps
the gateways' private halves next to the public ones the product is given
(``*_public.pem`` → ``*_private.pem``).
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

MANIFEST = "paykeys.json"


def _write_pair(folder: Path, stem: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = folder / f"{stem}_private.pem"
    public = folder / f"{stem}_public.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def ensure(folder: Path) -> dict[str, str]:
    """The key files and ids in ``folder``, made on first use."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / MANIFEST
    if manifest.exists():
        return json.loads(manifest.read_text())
    merchant_private, _ = _write_pair(folder, "wechatpay_merchant")
    _, platform_public = _write_pair(folder, "wechatpay_platform")
    app_private, _ = _write_pair(folder, "alipay_app")
    _, gateway_public = _write_pair(folder, "alipay_gateway")
    made = {
        "wechatpay_mchid": "1900000109",
        "wechatpay_private_key_path": str(merchant_private),
        "wechatpay_cert_serial_no": secrets.token_hex(20).upper(),
        "wechatpay_apiv3_key": secrets.token_hex(16),
        "wechatpay_public_key_path": str(platform_public),
        "wechatpay_public_key_id": "PUB_KEY_ID_" + secrets.token_hex(12).upper(),
        "alipay_app_id": "2021000000000001",
        "alipay_seller_id": "2088000000000001",
        "alipay_app_private_key_path": str(app_private),
        "alipay_public_key_path": str(gateway_public),
    }
    manifest.write_text(json.dumps(made, indent=1))
    return made


def private_half(public_key_path: str) -> bytes:
    """The gateway's private key, kept beside the public key the product has."""
    return Path(public_key_path.replace("_public.pem", "_private.pem")).read_bytes()


def merchant_public_half(private_key_path: str) -> bytes:
    """The merchant's public key, with which the sandbox gateway checks requests."""
    return Path(private_key_path.replace("_private.pem", "_public.pem")).read_bytes()


def payment_config(keys: dict[str, str], base_url: str) -> dict[str, dict]:
    """[wechatpay] and [alipay] sections pointing at this deployment's sandbox."""
    return {
        "wechatpay": {"mchid": keys["wechatpay_mchid"], "private_key_path": keys["wechatpay_private_key_path"],
                      "cert_serial_no": keys["wechatpay_cert_serial_no"], "apiv3_key": keys["wechatpay_apiv3_key"],
                      "public_key_path": keys["wechatpay_public_key_path"],
                      "public_key_id": keys["wechatpay_public_key_id"],
                      "api_base": f"{base_url}/sandbox/pay/wechatpay", "sandbox": True},
        "alipay": {"app_id": keys["alipay_app_id"], "seller_id": keys["alipay_seller_id"],
                   "app_private_key_path": keys["alipay_app_private_key_path"],
                   "alipay_public_key_path": keys["alipay_public_key_path"],
                   "gateway": f"{base_url}/sandbox/pay/alipay/gateway.do", "sandbox": True},
    }
