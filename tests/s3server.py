"""A real S3-compatible server for the storage tests and benchmark: moto's server, with authentication on.

Runs under the interpreter of ``.venv-s3`` (``./install.sh --dev`` makes it): moto needs botocore, which pins
python-dateutil<3 while the kubernetes client needs >=3, so it cannot share the project's environment. It starts on
a free port of 127.0.0.1, creates one IAM user with full S3 access and the bucket ``models``, prints one JSON line
(endpoint, access key, secret key, bucket) and serves until its standard input closes. Only the first three requests
(creating the user, its policy and its key) are unauthenticated; every request after them must be signed with the
printed key (``INITIAL_NO_AUTH_ACTION_COUNT``), so wrong credentials are refused as AWS would refuse them.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"  # read by moto at import

import boto3
from moto.server import ThreadedMotoServer


def main() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    anon = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "x",
        "aws_secret_access_key": "x",
    }
    iam = boto3.client("iam", **anon)
    iam.create_user(UserName="kubeinfer")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="kubeinfer", PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="kubeinfer")["AccessKey"]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    s3.create_bucket(Bucket="models")
    info = {"endpoint": endpoint, "key": key["AccessKeyId"], "secret": key["SecretAccessKey"], "bucket": "models"}
    print(json.dumps(info), flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
