// A fixture for test_aws_compat.py: the shape of src/aws/ecs.cc's operation
// table, which is all docs/compat/generate.py reads of it. Not compiled.
const Operation kOperations[] = {
    {"CreateCluster", Support::kFull, CreateCluster, ""},
    {"UpdateCluster", Support::kPartial, UpdateCluster, "settings, configuration, serviceConnectDefaults"},
    {"DescribeContainerInstances", Support::kFull, DescribeContainerInstances, ""},
    {"DescribeServices", Support::kFull, DescribeServices, ""},
    {"TagResource", Support::kFull, TagResource, ""},
};
