"""dhc's boundary to AWS services other than CloudWatch Logs: SageMaker HyperPod and EC2 (boto3 lives here)."""
