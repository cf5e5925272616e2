using System.Diagnostics;
using System.Net;
using Stripe;
using Stripe.Billing;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.StripeEmulator.Tests;

public sealed class IdempotencyAndFaultTests
{
    private const string Path = "/v1/billing/meter_events";

    private static async Task<(StripeEmulatorServer Server, Microsoft.Extensions.Time.Testing.FakeTimeProvider Time, string Customer)> SetupAsync(Action<StripeEmulatorOptions>? configure = null)
    {
        var (server, time) = await Emu.StartAsync(configure);
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        return (server, time, cus.Id);
    }

    [Fact]
    public async Task Post_SameKeySameParams_ReplaysFirstResponse()
    {
        var (server, _, cus) = await SetupAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var ro = new RequestOptions { IdempotencyKey = "key-1" };

        var first = await Emu.UsageAsync(c, cus, 5, identifier: "rep-1", ro: ro);
        var second = await Emu.UsageAsync(c, cus, 5, identifier: "rep-1", ro: ro);

        Assert.Equal(first.StripeResponse.Content, second.StripeResponse.Content);
        Assert.Equal("true", second.StripeResponse.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Single(await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct));
    }

    [Fact]
    public async Task Post_SameKeyDifferentParams_Returns400IdempotencyError()
    {
        var (server, _, cus) = await SetupAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var ro = new RequestOptions { IdempotencyKey = "key-2" };
        await Emu.UsageAsync(c, cus, 5, identifier: "rep-2", ro: ro);

        var ex = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus, 6, identifier: "rep-2", ro: ro));

        Assert.Equal(HttpStatusCode.BadRequest, ex.HttpStatusCode);
        Assert.Equal("idempotency_error", ex.StripeError.Type);
        Assert.Equal(5m, await server.Admin.GetMeterTotalAsync(cus, "ai_messages", Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
    }

    [Fact]
    public async Task Post_SameKeyAfter24Hours_ExecutesAgain()
    {
        var (server, time, cus) = await SetupAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var ro = new RequestOptions { IdempotencyKey = "key-3" };
        await c.V1.Customers.CreateAsync(new CustomerCreateOptions { Email = "x@example.com" }, ro, Emu.Ct);
        time.Advance(TimeSpan.FromHours(24) + TimeSpan.FromSeconds(1));

        var again = await c.V1.Customers.CreateAsync(new CustomerCreateOptions { Email = "x@example.com" }, ro, Emu.Ct);

        Assert.False(again.StripeResponse.Headers.Contains("Idempotent-Replayed"));
        Assert.Equal(2, (await c.V1.Customers.ListAsync(new CustomerListOptions { Email = "x@example.com" }, cancellationToken: Emu.Ct)).Data.Count);
    }

    [Fact]
    public async Task Post_StoredServerError_IsReplayedForTheSameKey()
    {
        var (server, _, cus) = await SetupAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await server.Admin.InjectFaultAsync(new FaultSpec(Path, FaultKind.ServerError, StoreForIdempotency: true), Emu.Ct);
        var ro = new RequestOptions { IdempotencyKey = "key-500" };

        var first = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus, 5, identifier: "r", ro: ro));
        var replay = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus, 5, identifier: "r", ro: ro));
        var otherKey = await Emu.UsageAsync(c, cus, 5, identifier: "r", ro: new RequestOptions { IdempotencyKey = "key-other" });

        Assert.Equal(HttpStatusCode.InternalServerError, first.HttpStatusCode);
        Assert.Equal(HttpStatusCode.InternalServerError, replay.HttpStatusCode);
        Assert.Equal("true", replay.StripeResponse.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal("r", otherKey.Identifier);
    }

    [Fact]
    public async Task Post_ValidationErrorIsNotStored_SameKeyMaySucceedLater()
    {
        var (server, _, cus) = await SetupAsync();
        await using var _s = server;
        using var http = Emu.Raw(server);
        using var bad = new HttpRequestMessage(HttpMethod.Post, Path) { Content = Emu.Form(("event_name", "ai_messages")) };
        bad.Headers.Add("Idempotency-Key", "k-val");
        using var badResp = await http.SendAsync(bad, Emu.Ct);
        using var good = new HttpRequestMessage(HttpMethod.Post, "/v1/customers") { Content = Emu.Form(("email", "a@b.c")) };
        good.Headers.Add("Idempotency-Key", "k-val2");

        using var goodResp = await http.SendAsync(good, Emu.Ct);

        Assert.Equal(HttpStatusCode.BadRequest, badResp.StatusCode);
        Assert.Equal(HttpStatusCode.OK, goodResp.StatusCode);
    }

    [Fact]
    public async Task Fault_ServerError_FailsNextNRequestsOnly_AndStripeNetRetriesThrough()
    {
        var (server, _, cus) = await SetupAsync();
        await using var _s = server;
        await server.Admin.InjectFaultAsync(new FaultSpec(Path, FaultKind.ServerError, Count: 2), Emu.Ct);

        var ex = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(Emu.Client(server), cus, 1, identifier: "a"));
        var retried = await Emu.UsageAsync(Emu.Client(server, retries: 2), cus, 1, identifier: "b");

        Assert.Equal(HttpStatusCode.InternalServerError, ex.HttpStatusCode);
        Assert.Equal("api_error", ex.StripeError.Type);
        Assert.Equal("b", retried.Identifier);
        Assert.Equal(["b"], (await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct)).Select(e => e.Identifier));
        Assert.Empty(await server.Admin.GetFaultsAsync(Emu.Ct));
        Assert.Equal(2, (await server.Admin.GetRejectionCountsAsync(Emu.Ct))["injected_server_error"]);
    }

    [Fact]
    public async Task Fault_RateLimited_Returns429WithReasonHeader_NotRetriedByStripeNet()
    {
        var (server, _, cus) = await SetupAsync();
        await using var _s = server;
        await server.Admin.InjectFaultAsync(new FaultSpec(Path, FaultKind.RateLimited), Emu.Ct);

        var ex = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(Emu.Client(server, retries: 3), cus, 1));

        Assert.Equal((HttpStatusCode)429, ex.HttpStatusCode);
        Assert.Equal("rate_limit", ex.StripeError.Code);
        Assert.Equal("global-rate", ex.StripeResponse.Headers.GetValues("Stripe-Rate-Limited-Reason").Single());
        Assert.Empty(await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct));
    }

    [Fact]
    public async Task Fault_Delay_DelaysThenProcesses()
    {
        var (server, _, cus) = await SetupAsync();
        await using var _s = server;
        await server.Admin.InjectFaultAsync(new FaultSpec(Path, FaultKind.Delay, DelayMilliseconds: 300), Emu.Ct);
        var sw = Stopwatch.StartNew();

        await Emu.UsageAsync(Emu.Client(server), cus, 1);

        Assert.True(sw.ElapsedMilliseconds >= 290, $"took {sw.ElapsedMilliseconds} ms");
        Assert.Single(await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct));
    }

    [Fact]
    public async Task Fault_DropAfterProcessing_EffectHappensClientSeesNetworkError()
    {
        var (server, _, cus) = await SetupAsync();
        await using var _s = server;
        await server.Admin.InjectFaultAsync(new FaultSpec(Path, FaultKind.DropAfterProcessing), Emu.Ct);

        var ex = await Record.ExceptionAsync(() => Emu.UsageAsync(Emu.Client(server), cus, 7, identifier: "dropped"));

        Assert.NotNull(ex);
        Assert.True(ex is not StripeException { StripeError: not null }, $"expected a network error, got {ex}");
        var accepted = Assert.Single(await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct));
        Assert.Equal("dropped", accepted.Identifier);
    }

    [Fact]
    public async Task Fault_DropAfterProcessing_StripeNetRetryWithSameKeyGetsReplay()
    {
        var (server, _, cus) = await SetupAsync();
        await using var _s = server;
        await server.Admin.InjectFaultAsync(new FaultSpec(Path, FaultKind.DropAfterProcessing), Emu.Ct);

        var ev = await Emu.UsageAsync(Emu.Client(server, retries: 2), cus, 7, identifier: "dropped-once");

        Assert.Equal("dropped-once", ev.Identifier);
        Assert.Equal("true", ev.StripeResponse.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal(7m, await server.Admin.GetMeterTotalAsync(cus, "ai_messages", Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
    }

    [Fact]
    public async Task Fault_PrefixAndMethod_MatchOnlyThoseRequests()
    {
        var (server, _, _) = await SetupAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await server.Admin.InjectFaultAsync(new FaultSpec("/v1/customers*", FaultKind.ServerError, Method: "GET"), Emu.Ct);

        await Emu.CustomerAsync(c);
        var ex = await Assert.ThrowsAsync<StripeException>(() => c.V1.Customers.ListAsync(cancellationToken: Emu.Ct));
        await c.V1.Customers.ListAsync(cancellationToken: Emu.Ct);

        Assert.Equal(HttpStatusCode.InternalServerError, ex.HttpStatusCode);
    }

    [Fact]
    public async Task RateLimit_AccountWide_Returns429BeyondBudget()
    {
        var (server, time, cus) = await SetupAsync(o => o.RateLimitPerSecond = 25);
        await using var _s = server;
        var c = Emu.Client(server);
        time.Advance(TimeSpan.FromSeconds(1));

        for (var i = 0; i < 25; i++)
        {
            await Emu.UsageAsync(c, cus, 1);
        }

        var ex = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus, 1));
        time.Advance(TimeSpan.FromMilliseconds(100));
        await Emu.UsageAsync(c, cus, 1);
        await server.Admin.SetRateLimitAsync(null, Emu.Ct);
        for (var i = 0; i < 30; i++)
        {
            await Emu.UsageAsync(c, cus, 1);
        }

        Assert.Equal((HttpStatusCode)429, ex.HttpStatusCode);
        Assert.Equal("global-rate", ex.StripeResponse.Headers.GetValues("Stripe-Rate-Limited-Reason").Single());
        Assert.Equal(1, (await server.Admin.GetRejectionCountsAsync(Emu.Ct))["rate_limited"]);
    }

    [Fact]
    public async Task Concurrency_Enforced_SecondCallForSameCustomerAndMeterGets429()
    {
        var (server, _, cus) = await SetupAsync(o => o.EnforceConcurrencyPerCustomerMeter = true);
        await using var _s = server;
        var c = Emu.Client(server);
        var other = await Emu.CustomerAsync(c, "other@example.com");
        await server.Admin.InjectFaultAsync(new FaultSpec(Path, FaultKind.Delay, DelayMilliseconds: 1000), Emu.Ct);

        var slow = Emu.UsageAsync(c, cus, 1, identifier: "slow");
        await Emu.InFlightAsync(server);
        var ex = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus, 1, identifier: "fast"));
        await Emu.UsageAsync(c, other.Id, 1, identifier: "other-customer");
        await slow;

        Assert.Equal((HttpStatusCode)429, ex.HttpStatusCode);
        Assert.Equal("resource-specific", ex.StripeResponse.Headers.GetValues("Stripe-Rate-Limited-Reason").Single());
        Assert.Equal(1, (await server.Admin.GetRejectionCountsAsync(Emu.Ct))["concurrency"]);
        Assert.Equal(["other-customer", "slow"], (await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct)).Select(e => e.Identifier).Order());
    }

    [Fact]
    public async Task Concurrency_NotEnforcedByDefault_OverlappingCallsSucceed()
    {
        var (server, _, cus) = await SetupAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await server.Admin.InjectFaultAsync(new FaultSpec(Path, FaultKind.Delay, DelayMilliseconds: 1000), Emu.Ct);

        var slow = Emu.UsageAsync(c, cus, 1, identifier: "slow");
        await Emu.InFlightAsync(server);
        await Emu.UsageAsync(c, cus, 1, identifier: "fast");
        await slow;

        Assert.Equal(2, (await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct)).Count);
    }
    [Fact]
    public async Task Post_SameKeyWhileFirstInFlight_Returns409()
    {
        var (server, _, cus) = await SetupAsync();
        await using var _s = server;
        using var http = Emu.Raw(server);
        await server.Admin.InjectFaultAsync(new FaultSpec(Path, FaultKind.Delay, DelayMilliseconds: 1000), Emu.Ct);
        HttpRequestMessage Request()
        {
            var r = new HttpRequestMessage(HttpMethod.Post, Path)
            {
                Content = Emu.Form(("event_name", "ai_messages"), ("payload[stripe_customer_id]", cus), ("payload[value]", "1"), ("identifier", "inflight")),
            };
            r.Headers.Add("Idempotency-Key", "k-inflight");
            return r;
        }

        using var firstRequest = Request();
        var first = http.SendAsync(firstRequest, Emu.Ct);
        await Emu.InFlightAsync(server);
        using var secondRequest = Request();
        using var second = await http.SendAsync(secondRequest, Emu.Ct);
        using var firstResponse = await first;

        Assert.Equal(HttpStatusCode.Conflict, second.StatusCode);
        Assert.Contains("idempotency_error", await second.Content.ReadAsStringAsync(Emu.Ct), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, firstResponse.StatusCode);
    }
    [Fact]
    public async Task Post_SameKeyWhileInFlight_StripeNetRetriesThe409AndGetsTheReplay()
    {
        var (server, _, cus) = await SetupAsync();
        await using var _s = server;
        await server.Admin.InjectFaultAsync(new FaultSpec(Path, FaultKind.Delay, DelayMilliseconds: 1000), Emu.Ct);
        var ro = new RequestOptions { IdempotencyKey = "k-retry-409" };

        var first = Emu.UsageAsync(Emu.Client(server), cus, 3, identifier: "once", ro: ro);
        await Emu.InFlightAsync(server);
        var second = await Emu.UsageAsync(Emu.Client(server, retries: 3), cus, 3, identifier: "once", ro: ro);
        var original = await first;

        Assert.Equal(original.StripeResponse.Content, second.StripeResponse.Content);
        Assert.Single(await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct));
        Assert.True((await server.Admin.GetRejectionCountsAsync(Emu.Ct))["idempotency_in_progress"] >= 1);
    }
}
