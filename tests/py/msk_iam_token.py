"""AWS's own MSK IAM signer (aws-msk-iam-sasl-signer-python, on botocore) at a fixed clock:
msk_iam_token.py KEY_ID SECRET SESSION_TOKEN|- REGION UNIX_SECONDS. Prints {"url": the signed URL
the token encodes, "expires_ms"}: what Lakesink's signer must match."""
import base64
import datetime
import json
import sys

import botocore.auth
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
from botocore.credentials import CredentialProvider, Credentials

key, secret, session, region, now = sys.argv[1:6]
fixed = datetime.datetime.fromtimestamp(int(now), datetime.timezone.utc).replace(tzinfo=None)
botocore.auth.get_current_datetime = lambda *a, **k: fixed


class Static(CredentialProvider):
    METHOD = "static"

    def load(self):
        return Credentials(key, secret, None if session == "-" else session)


token, expires_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(region, Static())
url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
print(json.dumps({"url": url, "expires_ms": expires_ms}))
