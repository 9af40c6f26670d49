%% @doc Test helpers: the Kinesis JSON API (SigV4-signed, through httpc) to create and delete
%% streams on the local server, and the `kinesis tail' CLI to read records back deaggregated.
-module(kinesis_test_api).

-export([endpoint/0, create_stream/2, delete_stream/1, tail/2, unique_name/1]).

-define(TARGET_PREFIX, "Kinesis_20131202.").

%% @doc The local server's endpoint: `KINESIS_TEST_ENDPOINT', else `KINESALITE_ENDPOINT'.
%% Fails loudly when neither is set: these tests need a server.
endpoint() ->
    case {os:getenv("KINESIS_TEST_ENDPOINT"), os:getenv("KINESALITE_ENDPOINT")} of
        {E, _} when is_list(E), E =/= "" -> E;
        {_, E} when is_list(E), E =/= "" -> E;
        _ -> error({no_kinesis_endpoint, "set KINESALITE_ENDPOINT (see scripts/servers)"})
    end.

%% @doc A stream name no other test uses.
unique_name(Prefix) ->
    lists:flatten(io_lib:format("~s-~s-~b",
                                [Prefix, os:getpid(), erlang:unique_integer([positive])])).

%% @doc Creates a stream and waits until it is ACTIVE.
create_stream(Name, Shards) ->
    {ok, _} = call("CreateStream",
                   io_lib:format("{\"StreamName\":\"~s\",\"ShardCount\":~b}", [Name, Shards])),
    wait_active(Name, 200).

wait_active(Name, 0) ->
    error({stream_not_active, Name});
wait_active(Name, Tries) ->
    {ok, Body} = call("DescribeStreamSummary", io_lib:format("{\"StreamName\":\"~s\"}", [Name])),
    case binary:match(Body, <<"\"StreamStatus\":\"ACTIVE\"">>) of
        nomatch -> timer:sleep(100), wait_active(Name, Tries - 1);
        _ -> ok
    end.

%% @doc Deletes a stream (best effort: cleanup).
delete_stream(Name) ->
    _ = call("DeleteStream", io_lib:format("{\"StreamName\":\"~s\"}", [Name])),
    ok.

call(Operation, Body0) ->
    {ok, _} = application:ensure_all_started(inets),
    {ok, _} = application:ensure_all_started(crypto),
    Body = iolist_to_binary(Body0),
    Url = endpoint(),
    #{host := Host} = Parsed = uri_string:parse(Url),
    HostHeader = case Parsed of
                     #{port := Port} -> Host ++ ":" ++ integer_to_list(Port);
                     _ -> Host
                 end,
    Target = ?TARGET_PREFIX ++ Operation,
    ContentType = "application/x-amz-json-1.1",
    Headers = sigv4_headers(HostHeader, ContentType, Target, Body),
    case httpc:request(post, {Url, Headers, ContentType, Body}, [{timeout, 10000}],
                       [{body_format, binary}]) of
        {ok, {{_, 200, _}, _, Response}} -> {ok, Response};
        {ok, {{_, Status, _}, _, Response}} -> {error, {Status, Response}};
        {error, Reason} -> {error, Reason}
    end.

%% AWS Signature Version 4 over the headers httpc sends, with the credentials in the
%% environment (the local servers accept any, but a signed request is a real request).
sigv4_headers(Host, ContentType, Target, Body) ->
    AccessKey = getenv("AWS_ACCESS_KEY_ID", "test"),
    SecretKey = getenv("AWS_SECRET_ACCESS_KEY", "test"),
    Region = getenv("AWS_REGION", "us-east-1"),
    {{Y, Mo, D}, {H, Mi, S}} = calendar:universal_time(),
    Date = io_lib:format("~4..0b~2..0b~2..0b", [Y, Mo, D]),
    AmzDate = lists:flatten(io_lib:format("~sT~2..0b~2..0b~2..0bZ", [Date, H, Mi, S])),
    SignedHeaders = "content-type;host;x-amz-date;x-amz-target",
    CanonicalHeaders = ["content-type:", ContentType, "\n", "host:", Host, "\n",
                        "x-amz-date:", AmzDate, "\n", "x-amz-target:", Target, "\n"],
    CanonicalRequest = ["POST\n/\n\n", CanonicalHeaders, "\n", SignedHeaders, "\n",
                        hex(crypto:hash(sha256, Body))],
    Scope = [Date, "/", Region, "/kinesis/aws4_request"],
    StringToSign = ["AWS4-HMAC-SHA256\n", AmzDate, "\n", Scope, "\n",
                    hex(crypto:hash(sha256, CanonicalRequest))],
    Key = lists:foldl(fun(Part, K) -> crypto:mac(hmac, sha256, K, Part) end,
                      iolist_to_binary(["AWS4", SecretKey]),
                      [Date, Region, "kinesis", "aws4_request"]),
    Signature = hex(crypto:mac(hmac, sha256, Key, StringToSign)),
    Authorization = lists:flatten(["AWS4-HMAC-SHA256 Credential=", AccessKey, "/", Scope,
                                   ", SignedHeaders=", SignedHeaders,
                                   ", Signature=", Signature]),
    [{"x-amz-date", AmzDate}, {"x-amz-target", Target}, {"authorization", Authorization}].

hex(Binary) ->
    [io_lib:format("~2.16.0b", [Byte]) || <<Byte>> <= Binary].

getenv(Name, Default) ->
    case os:getenv(Name) of
        false -> Default;
        "" -> Default;
        Value -> Value
    end.

%% @doc Every record of the stream from TRIM_HORIZON, deaggregated, through `kinesis tail'
%% (the CLI at `KINESIS_CLI'): it stops after `Max' records or 3 s without a new one.
%% Returns maps with `shard', `partition_key', `data' (decoded), `sequence_number',
%% `sub_sequence_number' (an integer) and `aggregated' (a boolean).
tail(Name, Max) ->
    Cli = case os:getenv("KINESIS_CLI") of
              false -> error({no_kinesis_cli, "set KINESIS_CLI to target/debug/kinesis"});
              Path -> Path
          end,
    Args = ["--endpoint-url", endpoint(), "--region", getenv("AWS_REGION", "us-east-1"),
            "tail", "--stream", Name, "--from", "trim-horizon", "--json",
            "--max", integer_to_list(Max), "--idle-exit", "3"],
    Port = open_port({spawn_executable, Cli},
                     [{args, Args}, exit_status, binary, {line, 1 bsl 22}, use_stdio]),
    Lines = collect(Port, [], <<>>),
    [record(Line) || Line <- Lines].

collect(Port, Lines, Partial) ->
    receive
        {Port, {data, {eol, Chunk}}} ->
            collect(Port, [<<Partial/binary, Chunk/binary>> | Lines], <<>>);
        {Port, {data, {noeol, Chunk}}} ->
            collect(Port, Lines, <<Partial/binary, Chunk/binary>>);
        {Port, {exit_status, 0}} ->
            lists:reverse(Lines);
        {Port, {exit_status, Status}} ->
            error({kinesis_tail_failed, Status, lists:reverse(Lines)})
    after 120000 ->
        error(kinesis_tail_timeout)
    end.

%% The CLI's JSON lines are flat objects of strings, numbers and booleans (OTP 25 has no JSON
%% module): pick the fields out with a regular expression.
record(Line) ->
    {match, Fields} = re:run(Line, <<"\"(\\w+)\":(\"(?:[^\"\\\\]|\\\\.)*\"|[^,}]+)">>,
                             [global, {capture, all_but_first, binary}]),
    Map = maps:from_list([{Key, unquote(Value)} || [Key, Value] <- Fields]),
    #{shard => maps:get(<<"shard">>, Map),
      partition_key => maps:get(<<"partition_key">>, Map),
      data => base64:decode(maps:get(<<"data">>, Map)),
      sequence_number => maps:get(<<"sequence_number">>, Map),
      sub_sequence_number => binary_to_integer(maps:get(<<"sub_sequence_number">>, Map)),
      aggregated => binary_to_atom(maps:get(<<"aggregated">>, Map))}.

unquote(<<"\"", Rest/binary>>) -> binary:part(Rest, 0, byte_size(Rest) - 1);
unquote(Other) -> Other.
