%% @doc EUnit suite for `kinesis_producer' against the local Kinesis server
%% (`KINESALITE_ENDPOINT'; run by scripts/test-erlang). Each test uses its own stream.
-module(kinesis_producer_tests).

-include_lib("eunit/include/eunit.hrl").

-define(UNREACHABLE, <<"http://127.0.0.1:1">>).

config(Stream, Extra) ->
    maps:merge(#{stream_name => Stream,
                 region => <<"us-east-1">>,
                 endpoint_url => kinesis_test_api:endpoint()},
               Extra).

with_stream(Shards, Test) ->
    Stream = kinesis_test_api:unique_name("erlang"),
    ok = kinesis_test_api:create_stream(Stream, Shards),
    try Test(Stream) after kinesis_test_api:delete_stream(Stream) end.

%% Receives the outcome of every ref in Refs (within Timeout ms of the last one), failing on a
%% duplicate or a foreign message; returns #{Ref => Result}.
outcomes(Refs, Timeout) ->
    outcomes(sets:from_list(Refs, [{version, 2}]), #{}, Timeout).

outcomes(Pending, Got, Timeout) ->
    case sets:size(Pending) of
        0 -> Got;
        _ ->
            receive
                {kinesis_put, Ref, Result} ->
                    ?assertNot(maps:is_key(Ref, Got)),
                    ?assert(sets:is_element(Ref, Pending)),
                    outcomes(sets:del_element(Ref, Pending), Got#{Ref => Result}, Timeout)
            after Timeout ->
                error({outcomes_missing, sets:size(Pending)})
            end
    end.

no_more_messages() ->
    receive Message -> error({unexpected_message, Message}) after 200 -> ok end.

%% --- against the local server

puts_a_thousand_records_and_reads_them_back_test_() ->
    {"1,000 puts: every outcome ok, each record stored once where its outcome says", {timeout, 180, fun() ->
        with_stream(2, fun(Stream) ->
            {ok, P} = kinesis_producer:start_link(config(Stream, #{'RecordMaxBufferedTime' => 50})),
            ?assertMatch(#{stream := _, outstanding_records := _}, kinesis_producer:info(P)),
            N = 1000,
            Puts = [begin
                        Key = iolist_to_binary(["key-", integer_to_list(I rem 61)]),
                        Data = iolist_to_binary(["erlang record ", integer_to_list(I)]),
                        {ok, Ref} = kinesis_producer:put(P, Key, Data),
                        {Ref, Key, Data}
                    end || I <- lists:seq(1, N)],
            %% flush/1 returns only after every outcome message is in the mailbox.
            ok = kinesis_producer:flush(P),
            Outcomes = outcomes([Ref || {Ref, _, _} <- Puts], 0),
            Expected = maps:from_list(
                [begin
                     {ok, Shard, Sequence, Sub} = maps:get(Ref, Outcomes),
                     {Data, {Key, Shard, Sequence, Sub}}
                 end || {Ref, Key, Data} <- Puts]),
            ?assertEqual(2, length(lists:usort([S || {_, S, _, _} <- maps:values(Expected)]))),
            %% With 50 ms of buffering, most records travel aggregated.
            ?assert(length([Sub || {_, _, _, Sub} <- maps:values(Expected), is_integer(Sub)]) > N div 2),
            ok = kinesis_producer:stop(P),
            no_more_messages(),
            Stored = kinesis_test_api:tail(Stream, N + 100),
            %% Every record stored exactly once, where its outcome said.
            ?assertEqual(N, length(Stored)),
            ?assertEqual(N, length(lists:usort([D || #{data := D} <- Stored]))),
            lists:foreach(
                fun(#{data := Data, partition_key := Key, shard := Shard, sequence_number := Seq,
                      sub_sequence_number := StoredSub, aggregated := Aggregated}) ->
                    Sub = case Aggregated of true -> StoredSub; false -> undefined end,
                    ?assertEqual({Key, Shard, Seq, Sub}, maps:get(Data, Expected))
                end, Stored)
        end)
    end}}.

explicit_hash_key_picks_the_shard_test_() ->
    {"an explicit hash key picks the shard", {timeout, 60, fun() ->
        with_stream(2, fun(Stream) ->
            {ok, P} = kinesis_producer:start_link(config(Stream, #{})),
            {ok, Low} = kinesis_producer:put(P, <<"same-key">>, 0, <<"low">>),
            {ok, High} = kinesis_producer:put(P, <<"same-key">>, (1 bsl 128) - 1, <<"high">>),
            ok = kinesis_producer:stop(P),
            #{Low := {ok, LowShard, _, _}, High := {ok, HighShard, _, _}} = outcomes([Low, High], 0),
            ?assertEqual(<<"shardId-000000000000">>, LowShard),
            ?assertEqual(<<"shardId-000000000001">>, HighShard)
        end)
    end}}.

stop_delivers_every_outcome_then_refuses_test_() ->
    {"stop/1 delivers every outcome before it returns, then puts are refused", {timeout, 60, fun() ->
        with_stream(1, fun(Stream) ->
            %% A long buffering time: without stop's flush nothing would be sent for a minute.
            {ok, P} = kinesis_producer:start_link(config(Stream, #{'RecordMaxBufferedTime' => 60000})),
            Owner = kinesis_producer:owner(P),
            ?assert(is_pid(Owner)),
            Refs = [begin {ok, R} = kinesis_producer:put(P, "k", [<<"d">>, integer_to_list(I)]), R end
                    || I <- lists:seq(1, 200)],
            ok = kinesis_producer:stop(P),
            Outcomes = outcomes(Refs, 0),
            ?assert(lists:all(fun({ok, _, _, _}) -> true; (_) -> false end, maps:values(Outcomes))),
            ?assertNot(is_process_alive(Owner)),
            ?assertEqual({error, closed}, kinesis_producer:put(P, <<"k">>, <<"late">>)),
            ?assertEqual({error, closed}, kinesis_producer:try_put(P, <<"k">>, <<"late">>)),
            ?assertEqual({error, closed}, kinesis_producer:flush(P)),
            ?assertEqual(ok, kinesis_producer:stop(P)),
            no_more_messages()
        end)
    end}}.

start_errors_test_() ->
    {"start_link/1 errors: missing stream, bad options", {timeout, 60, fun() ->
        Missing = kinesis_test_api:unique_name("erlang-missing"),
        ?assertMatch({error, {stream_not_found, _}}, kinesis_producer:start_link(config(Missing, #{}))),
        ?assertMatch({error, {config, <<"unknown producer option \"Bogus\"">>}},
                     kinesis_producer:start_link(config(Missing, #{'Bogus' => 1}))),
        ?assertMatch({error, {config, <<"invalid value \"soon\" for RecordTtl", _/binary>>}},
                     kinesis_producer:start_link([{stream_name, Missing}, {"RecordTtl", "soon"}])),
        ?assertMatch({error, {config, <<"stream_name is required">>}},
                     kinesis_producer:start_link(#{region => "us-east-1"})),
        ?assertMatch({error, {config, _}}, kinesis_producer:start_link(not_a_config)),
        no_more_messages()
    end}}.

invalid_records_are_refused_at_once_test_() ->
    {"invalid records are refused at once with {error, {invalid, Message}}", {timeout, 60, fun() ->
        with_stream(1, fun(Stream) ->
            {ok, P} = kinesis_producer:start_link(config(Stream, #{})),
            Invalid = fun(Result) -> ?assertMatch({error, {invalid, Message}} when is_binary(Message), Result) end,
            Invalid(kinesis_producer:put(P, <<>>, <<"data">>)),
            Invalid(kinesis_producer:put(P, binary:copy(<<"k">>, 257), <<"data">>)),
            Invalid(kinesis_producer:try_put(P, <<"k">>, binary:copy(<<0>>, 1024 * 1024 + 1))),
            Invalid(kinesis_producer:put(P, <<"k">>, <<"abc">>, <<"data">>)),
            Invalid(kinesis_producer:put(P, <<"k">>, 1 bsl 128, <<"data">>)),
            Invalid(kinesis_producer:put(P, <<"k">>, not_data)),
            Invalid(kinesis_producer:put(P, 42, <<"data">>)),
            ?assertEqual({error, {invalid, <<"record data is 1048577 bytes; Kinesis allows at most 1,048,576">>}},
                         kinesis_producer:put(P, <<"k">>, binary:copy(<<0>>, 1024 * 1024 + 1))),
            %% The largest record Kinesis takes is taken; a unicode string key works.
            {ok, Big} = kinesis_producer:put(P, "ключ", binary:copy(<<1>>, 1024 * 1024)),
            ok = kinesis_producer:stop(P),
            ?assertMatch(#{Big := {ok, _, _, undefined}}, outcomes([Big], 0)),
            no_more_messages()
        end)
    end}}.

%% --- no server needed: an endpoint where nothing listens

unreachable_endpoint_expires_records_test_() ->
    {"an unreachable endpoint: records fail with {expired, Attempts}", {timeout, 60, fun() ->
        {ok, P} = kinesis_producer:start_link(#{stream_name => <<"nowhere">>,
                                                region => <<"us-east-1">>,
                                                endpoint_url => ?UNREACHABLE,
                                                'RecordTtl' => 300,
                                                'ConnectTimeout' => 200}),
        {ok, Ref} = kinesis_producer:put(P, <<"k">>, <<"lost">>),
        receive
            {kinesis_put, Ref, {error, {expired, Attempts}}} ->
                ?assert(length(Attempts) >= 1),
                lists:foreach(fun(#{delay_ms := D, duration_ms := T, result := {error, Code, Message}}) ->
                                      ?assert(is_integer(D) andalso is_integer(T)),
                                      ?assert(is_binary(Code) andalso is_binary(Message))
                              end, Attempts)
        after 10000 ->
            error(no_outcome)
        end,
        ok = kinesis_producer:stop(P)
    end}}.

full_producer_backpressure_test_() ->
    {"backpressure: try_put says full, put waits in the calling process", {timeout, 60, fun() ->
        {ok, P} = kinesis_producer:start_link([{stream_name, "nowhere"}, {region, "us-east-1"},
                                               {endpoint_url, ?UNREACHABLE},
                                               {'MaxOutstandingRecords', 1},
                                               {'RecordTtl', 500}, {'ConnectTimeout', 200}]),
        {ok, First} = kinesis_producer:try_put(P, <<"k">>, <<"1">>),
        ?assertEqual({error, full}, kinesis_producer:try_put(P, <<"k">>, <<"2">>)),
        %% put/3 waits in this process (not on a scheduler) until the first record expires.
        Started = erlang:monotonic_time(millisecond),
        {ok, Second} = kinesis_producer:put(P, <<"k">>, <<"3">>),
        Waited = erlang:monotonic_time(millisecond) - Started,
        ?assert(Waited >= 200),
        ok = kinesis_producer:stop(P),
        Outcomes = outcomes([First, Second], 0),
        ?assertMatch({error, {expired, _}}, maps:get(First, Outcomes)),
        ?assertMatch({error, {expired, _}}, maps:get(Second, Outcomes)),
        no_more_messages()
    end}}.

a_blocked_put_gets_closed_when_the_producer_stops_test_() ->
    {"a put waiting for room gets {error, closed} when the producer stops", {timeout, 60, fun() ->
        {ok, P} = kinesis_producer:start_link(#{stream_name => "nowhere", region => "us-east-1",
                                                endpoint_url => ?UNREACHABLE,
                                                'MaxOutstandingRecords' => 1,
                                                'RecordTtl' => 2000}),
        {ok, First} = kinesis_producer:put(P, <<"k">>, <<"1">>),
        Self = self(),
        spawn_link(fun() -> Self ! {blocked_put, kinesis_producer:put(P, <<"k">>, <<"2">>)} end),
        timer:sleep(100),
        ok = kinesis_producer:stop(P),
        receive {blocked_put, Result} -> ?assertEqual({error, closed}, Result) after 10000 -> error(still_blocked) end,
        ?assertMatch(#{First := {error, {expired, _}}}, outcomes([First], 0)),
        no_more_messages()
    end}}.

owner_death_stops_the_producer_test_() ->
    {"the owner's death (parent exit, kill) stops the producer", {timeout, 60, fun() ->
        Self = self(),
        %% The process that calls start_link dies: its linked owner stops the producer.
        Caller = spawn(fun() ->
                           {ok, P} = kinesis_producer:start_link(#{stream_name => "nowhere",
                                                                   region => "us-east-1",
                                                                   endpoint_url => ?UNREACHABLE,
                                                                   'RecordTtl' => 500}),
                           Self ! {producer, P},
                           receive die -> exit(crashed) end
                       end),
        P1 = receive {producer, Got1} -> Got1 after 10000 -> error(no_producer) end,
        ?assertMatch({ok, _}, kinesis_producer:try_put(P1, <<"k">>, <<"v">>)),
        Owner1 = kinesis_producer:owner(P1),
        MRef = monitor(process, Owner1),
        %% The owner's exit with the parent's reason is logged as a crash, as OTP does for any
        %% gen_server: expected here, so kept out of the test output.
        #{level := Level} = logger:get_primary_config(),
        logger:set_primary_config(level, emergency),
        Caller ! die,
        receive {'DOWN', MRef, process, Owner1, _} -> ok after 10000 -> error(owner_alive) end,
        timer:sleep(100),
        logger:set_primary_config(level, Level),
        ?assertEqual({error, closed}, kinesis_producer:put(P1, <<"k">>, <<"v">>)),
        receive {kinesis_put, _, {error, {expired, _}}} -> ok after 0 -> error(no_outcome) end,

        %% The owner is killed (terminate/2 does not run): the NIF's monitor stops the producer.
        Parent = spawn(fun() ->
                           process_flag(trap_exit, true),
                           {ok, P} = kinesis_producer:start_link(#{stream_name => "nowhere",
                                                                   region => "us-east-1",
                                                                   endpoint_url => ?UNREACHABLE,
                                                                   'RecordTtl' => 500}),
                           Self ! {producer, P},
                           receive stop -> ok end
                       end),
        P2 = receive {producer, Got2} -> Got2 after 10000 -> error(no_producer) end,
        exit(kinesis_producer:owner(P2), kill),
        ?assertEqual(ok, wait_until_closed(P2, 100)),
        Parent ! stop,
        drain()
    end}}.

drain() ->
    receive _ -> drain() after 1000 -> ok end.

wait_until_closed(_P, 0) ->
    still_open;
wait_until_closed(P, Tries) ->
    case kinesis_producer:try_put(P, <<"k">>, <<"probe">>) of
        {error, closed} -> ok;
        _ -> timer:sleep(50), wait_until_closed(P, Tries - 1)
    end.
