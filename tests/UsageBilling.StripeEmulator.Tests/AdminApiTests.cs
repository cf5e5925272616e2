using System.Net;
using Stripe;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.StripeEmulator.Tests;

/// <summary>The HTTP admin API, driven through <see cref="EmulatorAdminClient"/> as a flusher test in another process would.</summary>
public sealed class AdminApiTests
{
    [Fact]
    public async Task AdminClient_FaultsClockInspectionAndReset_WorkOverHttp()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = new HttpClient();
        var admin = server.CreateAdminClient(http);
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);

        var faultId = await admin.InjectFaultAsync(new FaultSpec("/v1/billing/meter_events", FaultKind.RateLimited, Count: 1, RateLimitedReason: "endpoint-rate"), Emu.Ct);
        Assert.Equal(faultId, Assert.Single(await admin.GetFaultsAsync(Emu.Ct)).Id);
        var limited = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus.Id, 1));
        await Emu.UsageAsync(c, cus.Id, 4, identifier: "a", at: Emu.T0.AddMinutes(1));
        var now = await admin.AdvanceClockAsync(TimeSpan.FromHours(2), Emu.Ct);
        await Emu.UsageAsync(c, cus.Id, 6, identifier: "b");

        Assert.Equal("endpoint-rate", limited.StripeResponse.Headers.GetValues("Stripe-Rate-Limited-Reason").Single());
        Assert.Equal(Emu.T0.AddHours(2), now);
        Assert.Equal(now, await admin.GetNowAsync(Emu.Ct));
        Assert.Equal(4m, await admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0, Emu.T0.AddHours(1), Emu.Ct));
        Assert.Equal(10m, await admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0, Emu.T0.AddHours(3), Emu.Ct));
        var events = await admin.GetMeterEventsAsync(cus.Id, "ai_messages", Emu.Ct);
        Assert.Equal([("a", 4L, Emu.T0.AddMinutes(1)), ("b", 6L, Emu.T0.AddHours(2))], events.Select(e => (e.Identifier, e.Value, e.Timestamp)));
        Assert.Equal(1, (await admin.GetRejectionCountsAsync(Emu.Ct))["injected_rate_limit"]);

        await admin.SetClockAsync(Emu.T0.AddDays(1), Emu.Ct);
        Assert.Equal(Emu.T0.AddDays(1), await admin.GetNowAsync(Emu.Ct));

        await admin.ResetAsync(Emu.Ct);
        Assert.Empty(await admin.GetMeterEventsAsync(cancellationToken: Emu.Ct));
        Assert.Empty(await admin.GetRejectionCountsAsync(Emu.Ct));
        var gone = await Assert.ThrowsAsync<StripeException>(() => c.V1.Customers.GetAsync(cus.Id, cancellationToken: Emu.Ct));
        Assert.Equal(HttpStatusCode.NotFound, gone.HttpStatusCode);
    }

    [Fact]
    public async Task AdminClient_RateLimitConcurrencyWebhooksAndClearFaults()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        using var http = new HttpClient();
        var admin = server.CreateAdminClient(http);
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);

        await admin.SetRateLimitAsync(2, Emu.Ct);
        await Emu.UsageAsync(c, cus.Id, 1);
        await Emu.UsageAsync(c, cus.Id, 1);
        var limited = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus.Id, 1));
        await admin.SetRateLimitAsync(null, Emu.Ct);
        await admin.SetConcurrencyEnforcementAsync(true, Emu.Ct);
        await admin.InjectFaultAsync(new FaultSpec("/v1/billing/meter_events", FaultKind.Delay, DelayMilliseconds: 1000), Emu.Ct);
        var slow = Emu.UsageAsync(c, cus.Id, 1);
        await Emu.InFlightAsync(server);
        var concurrent = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus.Id, 1));
        await slow;
        await admin.InjectFaultAsync(new FaultSpec("/v1/customers", FaultKind.ServerError, Count: 5), Emu.Ct);
        await admin.ClearFaultsAsync(Emu.Ct);
        await Emu.CustomerAsync(c);
        var hook = await admin.AddWebhookEndpointAsync(new Uri("http://127.0.0.1:9/hook"), null, Emu.Ct);

        Assert.Equal((HttpStatusCode)429, limited.HttpStatusCode);
        Assert.Equal((HttpStatusCode)429, concurrent.HttpStatusCode);
        var rejections = await admin.GetRejectionCountsAsync(Emu.Ct);
        Assert.Equal((1L, 1L), (rejections["rate_limited"], rejections["concurrency"]));
        Assert.StartsWith("whsec_", hook.Secret, StringComparison.Ordinal);
        Assert.Equal(["*"], hook.EnabledEvents);
        Assert.Empty(await admin.GetWebhookDeliveriesAsync(Emu.Ct));
    }

    [Fact]
    public async Task AdminHttp_BadInput_Returns400ProblemNot500()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = new HttpClient();
        var admin = server.CreateAdminClient(http);

        var badFault = await Assert.ThrowsAsync<HttpRequestException>(() => admin.InjectFaultAsync(new FaultSpec("no-slash", FaultKind.ServerError), Emu.Ct));
        var backwards = await Assert.ThrowsAsync<HttpRequestException>(() => admin.AdvanceClockAsync(TimeSpan.FromSeconds(-5), Emu.Ct));
        using var missingRequest = new HttpRequestMessage(HttpMethod.Get, new Uri(server.BaseUrl, "/_emulator/totals?customer=cus_1"));
        missingRequest.Headers.Authorization = new("Bearer", server.AdminToken);
        using var missing = await http.SendAsync(missingRequest, Emu.Ct);

        Assert.Equal(HttpStatusCode.BadRequest, badFault.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, backwards.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, missing.StatusCode);
    }
}

public sealed class PersistenceTests
{
    [Fact]
    public async Task StateFile_SavedOnDispose_LoadedOnStart()
    {
        var file = Path.Combine(Path.GetTempPath(), $"stripe-emulator-{Guid.NewGuid():N}.json");
        try
        {
            string customer;
            string meterId;
            var (first, time) = await Emu.StartAsync(o => o.StateFilePath = file);
            await using (first)
            {
                var c = Emu.Client(first);
                meterId = (await Emu.MeterAsync(c)).Id;
                customer = (await Emu.CustomerAsync(c)).Id;
                await Emu.UsageAsync(c, customer, 9, identifier: "persisted");
                time.Advance(TimeSpan.FromMinutes(1));
            }

            Assert.True(System.IO.File.Exists(file));
            var second = await StripeEmulatorServer.StartAsync(new StripeEmulatorOptions { TimeProvider = time, StateFilePath = file }, Emu.Ct);
            await using (second)
            {
                var c = Emu.Client(second);
                var dup = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, customer, 9, identifier: "persisted"));

                Assert.Equal(meterId, (await c.V1.Billing.Meters.GetAsync(meterId, cancellationToken: Emu.Ct)).Id);
                Assert.Equal(9m, await second.Admin.GetMeterTotalAsync(customer, meterId, Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
                Assert.Equal("An event already exists with identifier persisted.", dup.StripeError.Message);
            }
        }
        finally
        {
            System.IO.File.Delete(file);
        }
    }

    [Fact]
    public async Task StateFile_FilteredWebhookEndpoint_KeepsItsEnabledEventsAcrossRestarts()
    {
        var file = Path.Combine(Path.GetTempPath(), $"stripe-emulator-{Guid.NewGuid():N}.json");
        try
        {
            string id;
            var (first, time) = await Emu.StartAsync(o => o.StateFilePath = file);
            await using (first)
            {
                var endpoint = await Emu.Client(first).V1.WebhookEndpoints.CreateAsync(
                    new Stripe.WebhookEndpointCreateOptions { Url = "http://127.0.0.1:9/hook", EnabledEvents = ["invoice.paid"] }, cancellationToken: Emu.Ct);
                id = endpoint.Id;
            }

            // Twice: each load once added the saved list to the default ["*"], so the endpoint came back receiving everything.
            for (var restart = 0; restart < 2; restart++)
            {
                var server = await StripeEmulatorServer.StartAsync(new StripeEmulatorOptions { TimeProvider = time, StateFilePath = file }, Emu.Ct);
                await using (server)
                {
                    var endpoint = await Emu.Client(server).V1.WebhookEndpoints.GetAsync(id, cancellationToken: Emu.Ct);
                    Assert.Equal(["invoice.paid"], endpoint.EnabledEvents);
                }
            }
        }
        finally
        {
            System.IO.File.Delete(file);
        }
    }

    [Fact]
    public async Task AdminApi_CrossOriginBrowserPost_Refused403_SameOriginAndNonBrowserAllowed()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = new HttpClient();
        var reset = new Uri(server.BaseUrl, "/_emulator/reset");

        // A page on another port posting text/plain (a "simple" request: no preflight) to reset the emulator.
        using var attack = new HttpRequestMessage(HttpMethod.Post, reset) { Content = new StringContent("x") };
        attack.Headers.Add("Origin", "http://127.0.0.1:1");
        using var fetch = new HttpRequestMessage(HttpMethod.Post, reset) { Content = new StringContent("x") };
        fetch.Headers.Add("Sec-Fetch-Site", "cross-site");
        using var withToken = new HttpRequestMessage(HttpMethod.Post, reset);
        withToken.Headers.Add("Origin", "http://127.0.0.1:1");
        withToken.Headers.Authorization = new("Bearer", server.AdminToken);
        using var own = new HttpRequestMessage(HttpMethod.Post, reset);
        own.Headers.Add("Origin", server.BaseUrl.GetLeftPart(UriPartial.Authority));
        own.Headers.Authorization = new("Bearer", server.AdminToken);
        using var tool = new HttpRequestMessage(HttpMethod.Post, reset);
        tool.Headers.Authorization = new("Bearer", server.AdminToken);

        Assert.Equal(HttpStatusCode.Forbidden, (await http.SendAsync(attack, Emu.Ct)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await http.SendAsync(fetch, Emu.Ct)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await http.SendAsync(withToken, Emu.Ct)).StatusCode);
        Assert.True((await http.SendAsync(own, Emu.Ct)).IsSuccessStatusCode);
        Assert.True((await http.SendAsync(tool, Emu.Ct)).IsSuccessStatusCode);
    }

    [Fact]
    public async Task AdminApi_WithoutOrWithWrongToken_Refused401_HealthAndCheckoutPageOpen()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = new HttpClient();
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var reset = new Uri(server.BaseUrl, "/_emulator/reset");
        var clock = new Uri(server.BaseUrl, "/_emulator/clock");

        using var bare = await http.PostAsync(reset, null, Emu.Ct);
        using var bareRead = await http.GetAsync(clock, Emu.Ct);
        using var wrong = new HttpRequestMessage(HttpMethod.Post, reset);
        wrong.Headers.Authorization = new("Bearer", server.AdminToken + "x");
        using var wrongAnswer = await http.SendAsync(wrong, Emu.Ct);
        using var stripeKey = new HttpRequestMessage(HttpMethod.Get, clock);
        stripeKey.Headers.Authorization = new("Bearer", Emu.Key);
        using var stripeKeyAnswer = await http.SendAsync(stripeKey, Emu.Ct);
        var wrongClient = new EmulatorAdminClient(http, server.BaseUrl, "emu_admin_not_the_right_one");
        var refused = await Assert.ThrowsAsync<HttpRequestException>(() => wrongClient.ResetAsync(Emu.Ct));
        using var header = new HttpRequestMessage(HttpMethod.Get, clock);
        header.Headers.Add("X-Emulator-Admin-Token", server.AdminToken);
        using var headerAnswer = await http.SendAsync(header, Emu.Ct);
        using var health = await http.GetAsync(new Uri(server.BaseUrl, "/_emulator/health"), Emu.Ct);
        using var missingCheckout = await http.GetAsync(new Uri(server.BaseUrl, "/_emulator/checkout/cs_test_missing"), Emu.Ct);

        Assert.Equal(HttpStatusCode.Unauthorized, bare.StatusCode);
        Assert.Contains("admin token", await bare.Content.ReadAsStringAsync(Emu.Ct), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Unauthorized, bareRead.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, wrongAnswer.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, stripeKeyAnswer.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Equal(HttpStatusCode.OK, headerAnswer.StatusCode);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, missingCheckout.StatusCode);

        // Nothing was reset by the refused calls.
        Assert.Equal(cus.Id, (await c.V1.Customers.GetAsync(cus.Id, cancellationToken: Emu.Ct)).Id);
    }

    [Fact]
    public async Task AdminToken_Configured_IsTheOneRequired_GeneratedOnesDifferPerStart()
    {
        var (configured, _) = await Emu.StartAsync(o => o.AdminToken = "emu_admin_configured_token_1");
        await using var _c = configured;
        var (first, _) = await Emu.StartAsync();
        await using var _f = first;
        var (second, _) = await Emu.StartAsync();
        await using var _g = second;
        using var http = new HttpClient();

        var now = await new EmulatorAdminClient(http, configured.BaseUrl, "emu_admin_configured_token_1").GetNowAsync(Emu.Ct);
        var own = await first.CreateAdminClient(http).GetNowAsync(Emu.Ct);
        var crossed = await Assert.ThrowsAsync<HttpRequestException>(() => new EmulatorAdminClient(http, second.BaseUrl, first.AdminToken).GetNowAsync(Emu.Ct));

        Assert.Equal(Emu.T0, now);
        Assert.Equal(Emu.T0, own);
        Assert.Equal("emu_admin_configured_token_1", configured.AdminToken);
        Assert.NotEqual(first.AdminToken, second.AdminToken);
        Assert.True(first.AdminToken.Length >= 32);
        Assert.Equal(HttpStatusCode.Unauthorized, crossed.StatusCode);
        Assert.Throws<ArgumentOutOfRangeException>(() => new StripeEmulatorOptions { AdminToken = "short" }.Validate());
    }
}
