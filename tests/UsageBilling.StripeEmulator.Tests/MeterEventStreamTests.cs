using System.Net;
using System.Text;
using System.Text.Json;
using Stripe;
using Stripe.Billing;
using Stripe.Events;
using Stripe.V2.Billing;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.StripeEmulator.Tests;

/// <summary>The v2 meter event session and stream (STRIPE.md "High throughput"), through Stripe.net's V2 services.</summary>
public sealed class MeterEventStreamTests
{
    private static string TypeOf(WebhookReceiver.Received r) => JsonDocument.Parse(r.Body).RootElement.GetProperty("type").GetString()!;

    private static async Task<StripeClient> StreamClientAsync(StripeEmulatorServer server, StripeClient c)
    {
        var session = await c.V2.Billing.MeterEventSession.CreateAsync(new MeterEventSessionCreateOptions(), cancellationToken: Emu.Ct);
        return Emu.Client(server, retries: 0, key: session.AuthenticationToken);
    }

    private static MeterEventStreamCreateEventOptions Event(string customer, long value, string identifier, string eventName = "ai_messages", DateTimeOffset? at = null) => new()
    {
        EventName = eventName,
        Identifier = identifier,
        Timestamp = at?.UtcDateTime,
        Payload = new Dictionary<string, string> { ["stripe_customer_id"] = customer, ["value"] = value.ToString(System.Globalization.CultureInfo.InvariantCulture) },
    };

    private static Task SendAsync(StripeClient stream, params MeterEventStreamCreateEventOptions[] events) =>
        stream.V2.Billing.MeterEventStream.CreateAsync(new MeterEventStreamCreateOptions { Events = [.. events] }, cancellationToken: Emu.Ct);

    [Fact]
    public async Task Session_CreatedThroughStripeNet_TokenValidFifteenMinutesOnTheEmulatorClock()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);

        var session = await c.V2.Billing.MeterEventSession.CreateAsync(new MeterEventSessionCreateOptions(), cancellationToken: Emu.Ct);

        Assert.StartsWith("mes_", session.Id, StringComparison.Ordinal);
        Assert.Equal("v2.billing.meter_event_session", session.Object);
        Assert.False(string.IsNullOrEmpty(session.AuthenticationToken));
        Assert.Equal(Emu.T0.UtcDateTime, session.Created);
        Assert.Equal(Emu.T0.AddMinutes(15).UtcDateTime, session.ExpiresAt);
    }

    [Fact]
    public async Task Stream_EventsThroughStripeNet_CountedInTheSameStoreAsV1AndDedupedByIdentifier()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var meter = await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        await Emu.UsageAsync(c, cus.Id, 5, identifier: "v1-first");
        var stream = await StreamClientAsync(server, c);

        await SendAsync(stream, Event(cus.Id, 2, "s-1", at: Emu.T0.AddMinutes(-1)), Event(cus.Id, 3, "s-2"), Event(cus.Id, 5, "v1-first"));
        // A resend of the same identifiers (a lost answer, then a retry) is accepted and dropped.
        await SendAsync(stream, Event(cus.Id, 2, "s-1"), Event(cus.Id, 3, "s-2"));
        // A v1 event with an identifier the stream already used is the usual duplicate.
        var dup = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus.Id, 3, identifier: "s-2"));

        Assert.Equal(HttpStatusCode.BadRequest, dup.HttpStatusCode);
        Assert.Equal(10m, await server.Admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0.AddHours(-1), Emu.T0.AddHours(1), Emu.Ct));
        var summaries = await c.V1.Billing.Meters.EventSummaries.ListAsync(meter.Id, new MeterEventSummaryListOptions { Customer = cus.Id, StartTime = Emu.T0.AddHours(-1).UtcDateTime, EndTime = Emu.T0.AddHours(1).UtcDateTime }, cancellationToken: Emu.Ct);
        Assert.Equal(10m, summaries.Data.Sum(s => s.AggregatedValue));
        var accepted = await server.Admin.GetMeterEventsAsync(cus.Id, cancellationToken: Emu.Ct);
        Assert.Equal(["s-1", "s-2", "v1-first"], accepted.Select(e => e.Identifier).Order(StringComparer.Ordinal));
        Assert.Equal(Emu.T0.AddMinutes(-1), accepted.Single(e => e.Identifier == "s-1").Timestamp);
        Assert.Equal(3, (await server.Admin.GetRejectionCountsAsync(Emu.Ct))["duplicate_identifier_dropped"]);
        // Stream events count as requests under the secret key that opened the session.
        var requests = await server.Admin.GetMeterEventRequestsAsync(Emu.Ct);
        Assert.Equal(2, requests.Single(r => r.Identifier == "s-1").Requests);
        Assert.Equal(Emu.Key, requests.Single(r => r.Identifier == "s-1").ApiKey);
    }

    [Fact]
    public async Task Stream_TokenPastFifteenMinutes_401SessionExpiredAsStripeNetsTemporarySessionExpiredException()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var stream = await StreamClientAsync(server, c);
        time.Advance(TimeSpan.FromMinutes(15) - TimeSpan.FromSeconds(1));
        await SendAsync(stream, Event(cus.Id, 1, "before-expiry"));
        time.Advance(TimeSpan.FromSeconds(1));

        var ex = await Assert.ThrowsAsync<Stripe.V2.TemporarySessionExpiredException>(() => SendAsync(stream, Event(cus.Id, 1, "after-expiry")));

        Assert.Equal(HttpStatusCode.Unauthorized, ex.HttpStatusCode);
        Assert.Equal("billing_meter_event_session_expired", ex.StripeError.Code);
        Assert.Equal(["before-expiry"], (await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct)).Select(e => e.Identifier));
        var fresh = await StreamClientAsync(server, c);
        await SendAsync(fresh, Event(cus.Id, 1, "after-expiry"));
        Assert.Equal(2, (await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct)).Count);
    }

    [Fact]
    public async Task Stream_SessionsExpiredByTheAdminApi_NextRequest401SessionExpired()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var stream = await StreamClientAsync(server, c);
        using var http = new HttpClient();
        var admin = server.CreateAdminClient(http);

        Assert.Equal(1, await admin.ExpireMeterEventSessionsAsync(Emu.Ct));

        var ex = await Assert.ThrowsAsync<Stripe.V2.TemporarySessionExpiredException>(() => SendAsync(stream, Event(cus.Id, 1, "x")));
        Assert.Equal("billing_meter_event_session_expired", ex.StripeError.Code);
        Assert.Equal(0, await server.Admin.ExpireMeterEventSessionsAsync(Emu.Ct));
    }

    [Theory]
    [InlineData("mes_tok_test_unknown")]
    [InlineData(Emu.Key)]
    public async Task Stream_TokenThatIsNoSession_401AndNothingRecorded(string token)
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var stream = new StripeClient(new StripeClientOptions { ApiKey = token, ApiBase = server.ApiBase, MeterEventsBase = server.ApiBase });

        var ex = await Assert.ThrowsAsync<StripeException>(() => SendAsync(stream, Event(cus.Id, 1, "x")));

        Assert.Equal(HttpStatusCode.Unauthorized, ex.HttpStatusCode);
        Assert.IsNotType<Stripe.V2.TemporarySessionExpiredException>(ex);
        Assert.Empty(await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct));
    }

    [Fact]
    public async Task Stream_HundredEventsAccepted_HundredAndOne400AndNothingRecorded()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var stream = await StreamClientAsync(server, c);

        await SendAsync(stream, [.. Enumerable.Range(0, 100).Select(i => Event(cus.Id, 1, $"ok-{i}"))]);
        var ex = await Assert.ThrowsAsync<StripeException>(() => SendAsync(stream, [.. Enumerable.Range(0, 101).Select(i => Event(cus.Id, 1, $"big-{i}"))]));

        Assert.Equal(HttpStatusCode.BadRequest, ex.HttpStatusCode);
        Assert.Contains("100", ex.StripeError.Message, StringComparison.Ordinal);
        Assert.Equal(100m, await server.Admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
    }

    [Fact]
    public async Task Stream_InvalidEvents_AcceptedThenEachReportedAsAThinEventNamingItsIdentifier()
    {
        var (server, _) = await Emu.StartAsync(o => o.WebhookSignatureClock = WebhookSignatureClock.System);
        await using var _s = server;
        await using var receiver = await WebhookReceiver.StartAsync();
        var c = Emu.Client(server);
        await server.Admin.AddWebhookEndpointAsync(receiver.Url, ["v1.billing.meter.error_report_triggered", "v1.billing.meter.no_meter_found"], Emu.Ct);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var stream = await StreamClientAsync(server, c);
        var badValue = Event(cus.Id, 1, "bad-value");
        badValue.Payload["value"] = "1.5";

        // All synchronous 400s in v1 (value, 35 days) are asynchronous on the stream: the request succeeds.
        await SendAsync(
            stream,
            Event("cus_unknown", 1, "ghost"),
            Event(cus.Id, 1, "lost", eventName: "no_such_meter"),
            badValue,
            Event(cus.Id, 1, "ancient", at: Emu.T0.AddDays(-40)),
            Event(cus.Id, 4, "good"));

        var expected = new Dictionary<string, string>
        {
            ["ghost"] = "meter_event_customer_not_found",
            ["bad-value"] = "meter_event_invalid_value",
            ["ancient"] = "timestamp_too_far_in_past",
        };
        foreach (var (identifier, code) in expected)
        {
            var received = await receiver.WaitForAsync(r => TypeOf(r) == "v1.billing.meter.error_report_triggered" && Matches(c, r, identifier));
            var full = (V1BillingMeterErrorReportTriggeredEvent)await c.V2.Core.Events.GetAsync(JsonDocument.Parse(received.Body).RootElement.GetProperty("id").GetString()!, cancellationToken: Emu.Ct);
            Assert.Equal(code, Assert.Single(full.Data.Reason.ErrorTypes).Code);
        }

        await receiver.WaitForAsync(r => TypeOf(r) == "v1.billing.meter.no_meter_found");
        Assert.Equal(4m, await server.Admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0.AddDays(-41), Emu.T0.AddDays(1), Emu.Ct));
    }

    /// <summary>Whether a thin error report's full event names <paramref name="identifier"/> in its samples.</summary>
    private static bool Matches(StripeClient c, WebhookReceiver.Received r, string identifier)
    {
        var id = JsonDocument.Parse(r.Body).RootElement.GetProperty("id").GetString()!;
        var full = (V1BillingMeterErrorReportTriggeredEvent)c.V2.Core.Events.Get(id);
        return full.Data.Reason.ErrorTypes.Any(t => t.SampleErrors.Any(s => s.Request.Identifier == identifier));
    }

    [Theory]
    [InlineData("application/x-www-form-urlencoded", "events[0][event_name]=ai_messages")]
    [InlineData("application/json", "{\"events\":[{\"event_name\":\"ai_messages\"}]}")]
    [InlineData("application/json", "{\"events\":[{\"event_name\":\"ai_messages\",\"payload\":{\"value\":3}}]}")]
    [InlineData("application/json", "{\"events\":[{\"event_name\":\"ai_messages\",\"payload\":{\"value\":\"3\"},\"timestamp\":1767225600}]}")]
    [InlineData("application/json", "{\"events\":[],\"extra\":1}")]
    [InlineData("application/json", "{\"events\":[]}")]
    [InlineData("application/json", "[1]")]
    public async Task Stream_MalformedRequest_400AndNothingRecorded(string contentType, string body)
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var session = await c.V2.Billing.MeterEventSession.CreateAsync(new MeterEventSessionCreateOptions(), cancellationToken: Emu.Ct);
        using var http = new HttpClient { BaseAddress = server.BaseUrl };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v2/billing/meter_event_stream") { Content = new StringContent(body, Encoding.UTF8) };
        request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue(contentType);
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", session.AuthenticationToken);

        using var response = await http.SendAsync(request, Emu.Ct);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Emu.Ct)).RootElement.GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Empty(await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct));
    }

    [Fact]
    public async Task RateLimits_StreamHasItsOwnLimitAndDoesNotUseTheV1Budget()
    {
        var (server, _) = await Emu.StartAsync(o =>
        {
            o.RateLimitPerSecond = 2;
            o.MeterEventStreamRateLimitPerSecond = 3;
        });
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var stream = await StreamClientAsync(server, c);

        // The fake clock stands still: the v1 bucket (2) is spent by the meter and the session, the stream's (3) is untouched.
        await Assert.ThrowsAsync<StripeException>(() => Emu.CustomerAsync(c));
        for (var i = 0; i < 3; i++)
        {
            await SendAsync(stream, Event("cus_x", 1, $"r-{i}"));
        }

        var ex = await Assert.ThrowsAsync<Stripe.V2.RateLimitException>(() => SendAsync(stream, Event("cus_x", 1, "r-3")));
        Assert.Equal((HttpStatusCode)429, ex.HttpStatusCode);
        var rejections = await server.Admin.GetRejectionCountsAsync(Emu.Ct);
        Assert.Equal(1, rejections["meter_event_stream_rate_limited"]);
        Assert.Equal(1, rejections["rate_limited"]);
        Assert.Equal(3, (await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct)).Count);
    }

    [Fact]
    public async Task RateLimits_V1MeterEventsHaveTheirOwnEndpointLimit()
    {
        var (server, time) = await Emu.StartAsync(o => o.MeterEventRateLimitPerSecond = 2);
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        await Emu.UsageAsync(c, cus.Id, 1);
        await Emu.UsageAsync(c, cus.Id, 1);

        var ex = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus.Id, 1));
        await Emu.CustomerAsync(c, "other@example.com");
        time.Advance(TimeSpan.FromSeconds(1));
        await Emu.UsageAsync(c, cus.Id, 1);

        Assert.Equal((HttpStatusCode)429, ex.HttpStatusCode);
        Assert.Equal("endpoint-rate", ex.StripeResponse.Headers.GetValues("Stripe-Rate-Limited-Reason").Single());
        Assert.Equal(3m, await server.Admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
    }

    [Fact]
    public async Task Faults_ServerErrorAndLostAnswerOnTheStream_ResendCountsOnce()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var stream = await StreamClientAsync(server, c);
        await server.Admin.InjectFaultAsync(new FaultSpec("/v2/billing/meter_event_stream", FaultKind.ServerError), Emu.Ct);
        await server.Admin.InjectFaultAsync(new FaultSpec("/v2/billing/meter_event_stream", FaultKind.DropAfterProcessing), Emu.Ct);

        var error = await Assert.ThrowsAsync<StripeException>(() => SendAsync(stream, Event(cus.Id, 7, "a"), Event(cus.Id, 1, "b")));
        Assert.Equal(HttpStatusCode.InternalServerError, error.HttpStatusCode);
        Assert.Equal(0m, await server.Admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
        await Assert.ThrowsAnyAsync<Exception>(() => SendAsync(stream, Event(cus.Id, 7, "a"), Event(cus.Id, 1, "b")));
        await SendAsync(stream, Event(cus.Id, 7, "a"), Event(cus.Id, 1, "b"));

        Assert.Equal(8m, await server.Admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
    }
}
