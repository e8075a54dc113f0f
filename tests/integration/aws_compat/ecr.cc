// A fixture for test_aws_compat.py, as ecs.cc beside it. Not compiled.
const Operation kOperations[] = {
    {"CreateRepository", Support::kFull, CreateRepository, ""},
    {"PutImage", Support::kFull, PutImage, ""},
    {"PutImageTagMutability", Support::kFull, PutImageTagMutability, ""},
    {"BatchGetImage", Support::kFull, BatchGetImage, ""},
    {"GetAuthorizationToken", Support::kFull, GetAuthorizationToken, ""},
    {"GetLifecyclePolicy", Support::kFull, GetLifecyclePolicy, ""},
    {"TagResource", Support::kFull, TagResource, ""},
};
