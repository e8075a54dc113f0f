"""A fixture for test_aws_compat.py: test functions for docs/compat/generate.py
to find operations in. Never run (run.py looks only in tests/integration/).
Its docstring names delete-cluster, which must not count."""


def aws(*args):
    return ["/usr/bin/aws"] + list(args)


def walkthrough():
    aws("ecs", "describe-container-instances", "--cluster", "x")


def test_ecs_walkthrough():
    """update-cluster in a docstring is not coverage."""
    aws("ecs", "create-cluster", "--cluster-name", "x")
    aws("ecs", "tag-resource", "--resource-arn", "a")  # put-image in a comment is not either
    walkthrough()


def test_ecr_push():
    aws("ecr", "put-image-tag-mutability", "--repository-name", "r")
    aws("ecr", "get-lifecycle-policy-preview")
    aws("ecr", "untag-resource")
    return f"aws ecr batch-get-image --repository-name {1}"


def test_raw_targets():
    return ["AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken", "DescribeServices"]
