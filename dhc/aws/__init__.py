"""dhc's boundary to AWS: SageMaker HyperPod and EC2 (actuators), CloudWatch Logs (logs, logship).
boto3 and botocore are imported here and nowhere else in dhc (an import-linter contract holds it)."""
