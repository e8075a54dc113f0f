"""Tags (ECS and ECR TagResource, UntagResource, ListTagsForResource) and the
custom attributes of container instances (ECS PutAttributes, DeleteAttributes,
ListAttributes) through the real `aws` CLI: the front end calls the native
/v1/tags and /v1/nodes/{id}/attributes routes (docs/api.md)."""

import json

from harness import Agent, Server, check, expect_status, timeout, wait_until
from test_aws import access_key, aws, aws_env, aws_fails


@timeout(240)
def test_aws_tags_on_ecs_and_ecr_resources():
    with Server(args=["--aws-account-id", "123456789012"]) as s:
        env = aws_env(s, access_key(s, role="deploy"))
        _, out, _ = aws(s, env, "ecs", "create-cluster", "--cluster-name", "tagged")
        cluster = out["cluster"]["clusterArn"]
        aws(s, env, "ecs", "tag-resource", "--resource-arn", cluster, "--tags", "key=team,value=web",
            "key=env,value=prod")
        _, lt, _ = aws(s, env, "ecs", "list-tags-for-resource", "--resource-arn", cluster)
        check(sorted((t["key"], t["value"]) for t in lt["tags"]) == [("env", "prod"), ("team", "web")],
              "list-tags-for-resource: %r" % lt)
        # An ARN of another region and account names the same cluster.
        other = "arn:aws:ecs:us-west-2:999999999999:cluster/tagged"
        aws(s, env, "ecs", "tag-resource", "--resource-arn", other, "--tags", "key=team,value=api")
        _, lt, _ = aws(s, env, "ecs", "list-tags-for-resource", "--resource-arn", cluster)
        check({t["key"]: t["value"] for t in lt["tags"]} == {"env": "prod", "team": "api"}, "replaced: %r" % lt)
        aws(s, env, "ecs", "untag-resource", "--resource-arn", cluster, "--tag-keys", "env", "nosuch")
        _, lt, _ = aws(s, env, "ecs", "list-tags-for-resource", "--resource-arn", cluster)
        check(lt["tags"] == [{"key": "team", "value": "api"}], "untag-resource: %r" % lt)

        # A task definition revision.
        _, td, _ = aws(s, env, "ecs", "register-task-definition", "--family", "tagged-app", "--container-definitions",
                       json.dumps([{"name": "app", "image": "busybox", "memory": 64}]))
        td_arn = td["taskDefinition"]["taskDefinitionArn"]
        aws(s, env, "ecs", "tag-resource", "--resource-arn", td_arn, "--tags", "key=owner,value=")
        _, lt, _ = aws(s, env, "ecs", "list-tags-for-resource", "--resource-arn", td_arn)
        check(lt["tags"] == [{"key": "owner", "value": ""}], "task definition tags: %r" % lt)

        # AWS's rules: keys not aws:, 1-128 characters, at most 50 per resource; resources that exist.
        aws_fails(s, env, "InvalidParameterException", "ecs", "tag-resource", "--resource-arn", cluster,
                  "--tags", "key=aws:x,value=1")
        aws_fails(s, env, "InvalidParameterException", "ecs", "tag-resource", "--resource-arn", cluster,
                  "--tags", "key=%s,value=1" % ("k" * 129))
        many = ["key=k%d,value=v" % i for i in range(50)]
        aws_fails(s, env, "InvalidParameterException", "ecs", "tag-resource", "--resource-arn", cluster,
                  "--tags", *many)
        err = aws_fails(s, env, "InvalidParameterException", "ecs", "list-tags-for-resource", "--resource-arn",
                        "arn:aws:ecs:eu-north-1:123456789012:cluster/nosuch")
        check("The specified resource is not found" in err, "not found: %s" % err)
        aws_fails(s, env, "InvalidParameterException", "ecs", "tag-resource", "--resource-arn",
                  "arn:aws:ecs:eu-north-1:123456789012:service/tagged/nosuch", "--tags", "key=a,value=b")

        # ECR: {Key, Value}; an unknown repository is RepositoryNotFoundException.
        _, repo, _ = aws(s, env, "ecr", "create-repository", "--repository-name", "team/app")
        repo_arn = repo["repository"]["repositoryArn"]
        aws(s, env, "ecr", "tag-resource", "--resource-arn", repo_arn, "--tags", "Key=cost,Value=42",
            "Key=team,Value=web")
        _, rt, _ = aws(s, env, "ecr", "list-tags-for-resource", "--resource-arn", repo_arn)
        check(sorted((t["Key"], t["Value"]) for t in rt["tags"]) == [("cost", "42"), ("team", "web")],
              "ecr list-tags-for-resource: %r" % rt)
        aws(s, env, "ecr", "untag-resource", "--resource-arn", repo_arn, "--tag-keys", "cost")
        _, rt, _ = aws(s, env, "ecr", "list-tags-for-resource", "--resource-arn", repo_arn)
        check(rt["tags"] == [{"Key": "team", "Value": "web"}], "ecr untag-resource: %r" % rt)
        aws_fails(s, env, "RepositoryNotFoundException", "ecr", "list-tags-for-resource", "--resource-arn",
                  "arn:aws:ecr:eu-north-1:123456789012:repository/nosuch")

        # A read-only key reads tags and changes none; a key limited to another cluster does neither.
        ro = aws_env(s, access_key(s, role="read-only"))
        aws(s, ro, "ecs", "list-tags-for-resource", "--resource-arn", cluster)
        aws_fails(s, ro, "AccessDeniedException", "ecs", "tag-resource", "--resource-arn", cluster,
                  "--tags", "key=a,value=b")
        expect_status(s.request("POST", "/v1/clusters", {"clusterName": "elsewhere"}), 201)
        limited = aws_env(s, access_key(s, role="deploy", clusters=["elsewhere"]))
        aws_fails(s, limited, "AccessDeniedException", "ecs", "tag-resource", "--resource-arn", cluster,
                  "--tags", "key=a,value=b")
        aws_fails(s, limited, "AccessDeniedException", "ecs", "list-tags-for-resource", "--resource-arn", cluster)

        # Tags persist across a restart, and go with their resource.
        s.stop()
        s.start()
        _, lt, _ = aws(s, env, "ecs", "list-tags-for-resource", "--resource-arn", cluster)
        check(lt["tags"] == [{"key": "team", "value": "api"}], "after a restart: %r" % lt)
        _, rt, _ = aws(s, env, "ecr", "list-tags-for-resource", "--resource-arn", repo_arn)
        check(rt["tags"] == [{"Key": "team", "Value": "web"}], "ecr after a restart: %r" % rt)
        aws(s, env, "ecs", "delete-cluster", "--cluster", "tagged")
        aws(s, env, "ecs", "create-cluster", "--cluster-name", "tagged")
        _, lt, _ = aws(s, env, "ecs", "list-tags-for-resource", "--resource-arn", cluster)
        check(lt["tags"] == [], "a new cluster of the old name has no tags: %r" % lt)
        aws(s, env, "ecr", "delete-repository", "--repository-name", "team/app")
        aws(s, env, "ecr", "create-repository", "--repository-name", "team/app")
        _, rt, _ = aws(s, env, "ecr", "list-tags-for-resource", "--resource-arn", repo_arn)
        check(rt["tags"] == [], "a new repository of the old name has no tags: %r" % rt)
        # The native route, as berth's CLI and scripts see it.
        r = expect_status(s.request("GET", "/v1/tags?resource=" + td_arn.replace("eu-north-1", "local")
                                    .replace("123456789012", "000000000000")), 200)
        check(r.json() == {"tags": [{"key": "owner", "value": ""}]}, "GET /v1/tags: %r" % r.json())


@timeout(240)
def test_aws_tags_attributes_on_container_instances():
    with Server() as s:
        env = aws_env(s, access_key(s, role="deploy"))
        agent = expect_status(s.request("POST", "/v1/tokens", {"role": "agent"}), 201).json()["token"]["secret"]
        with Agent(s, 2, agent, id_prefix="attr"):
            def instances():
                _, out, _ = aws(s, env, "ecs", "list-container-instances")
                return len(out["containerInstanceArns"]) == 2 and sorted(out["containerInstanceArns"])
            arns = wait_until(instances, wait=60, step=0.5, what="two simulated nodes")
            _, la, _ = aws(s, env, "ecs", "list-attributes", "--target-type", "container-instance",
                           "--attribute-name", "zone")
            agents_zones = sorted((a["targetId"], a["value"]) for a in la["attributes"])
            check(len(agents_zones) == 2, "the agent's zone attributes: %r" % la)
            aws(s, env, "ecs", "put-attributes", "--attributes",
                "name=stack,value=prod,targetId=%s" % arns[0], "name=zone,value=b,targetId=%s" % arns[0])
            _, la, _ = aws(s, env, "ecs", "list-attributes", "--target-type", "container-instance",
                           "--attribute-name", "stack")
            check(la["attributes"] == [{"name": "stack", "value": "prod", "targetType": "container-instance",
                                        "targetId": arns[0]}], "list-attributes: %r" % la)
            # The API's attribute wins over the agent's of the same name.
            _, la, _ = aws(s, env, "ecs", "list-attributes", "--target-type", "container-instance",
                           "--attribute-name", "zone", "--attribute-value", "b")
            check([a["targetId"] for a in la["attributes"]] == [arns[0]], "zone=b: %r" % la)
            _, dci, _ = aws(s, env, "ecs", "describe-container-instances", "--container-instances", arns[0])
            attrs = {a["name"]: a.get("value") for a in dci["containerInstances"][0]["attributes"]}
            check(attrs.get("stack") == "prod" and attrs.get("zone") == "b", "describe: %r" % attrs)
            # Placement sees them.
            aws(s, env, "ecs", "register-task-definition", "--family", "pinned", "--container-definitions",
                json.dumps([{"name": "p", "image": "busybox", "memory": 32}]))
            _, rt, _ = aws(s, env, "ecs", "run-task", "--task-definition", "pinned", "--count", "3",
                           "--placement-constraints", "type=memberOf,expression=attribute:stack == prod")
            check(len(rt["tasks"]) == 3 and all(t["containerInstanceArn"] == arns[0] for t in rt["tasks"]),
                  "run-task on attribute:stack == prod: %r" % rt)
            # Deleted, the agent's own shows again.
            aws(s, env, "ecs", "delete-attributes", "--attributes", "name=zone,targetId=%s" % arns[0],
                "name=stack,targetId=%s" % arns[0])
            _, la, _ = aws(s, env, "ecs", "list-attributes", "--target-type", "container-instance",
                           "--attribute-name", "zone")
            check(sorted((a["targetId"], a["value"]) for a in la["attributes"]) == agents_zones,
                  "after delete-attributes, the agent's own: %r" % la)
            _, rt, _ = aws(s, env, "ecs", "run-task", "--task-definition", "pinned",
                           "--placement-constraints", "type=memberOf,expression=attribute:stack == prod")
            check(not rt["tasks"] and rt["failures"], "no node has stack=prod any more: %r" % rt)
            aws_fails(s, env, "TargetNotFoundException", "ecs", "put-attributes", "--attributes",
                      "name=a,value=b,targetId=nosuch")
            aws_fails(s, env, "InvalidParameterException", "ecs", "list-attributes", "--target-type", "task")
            # Persisted: after a restart the node keeps its custom attribute.
            aws(s, env, "ecs", "put-attributes", "--attributes", "name=rack,value=r7,targetId=%s" % arns[1])
        s.stop()
        s.start()
        _, la, _ = aws(s, env, "ecs", "list-attributes", "--target-type", "container-instance",
                       "--attribute-name", "rack")
        check([(a["targetId"], a["value"]) for a in la["attributes"]] == [(arns[1], "r7")],
              "after a restart: %r" % la)
