using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Identity;
using UsageBilling.Web.Data;

namespace UsageBilling.Web.Endpoints;

/// <summary>Sign-out: a POST with an antiforgery token (a GET link would let any page sign the user out); it revokes the account's cookies.</summary>
internal static class AccountEndpoints
{
    public static void MapAccountEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/account/logout", async (HttpContext http, IAntiforgery antiforgery, SignInManager<AppUser> signIn, UserManager<AppUser> users) =>
        {
            if (!await antiforgery.IsRequestValidAsync(http))
            {
                return Results.Problem(statusCode: StatusCodes.Status400BadRequest, title: "Invalid antiforgery token");
            }

            // A new security stamp revokes every cookie issued so far (validated on each request), not only this browser's.
            if (await users.GetUserAsync(http.User) is { } user)
            {
                await users.UpdateSecurityStampAsync(user);
            }

            await signIn.SignOutAsync();
            return Results.LocalRedirect("~/");
        }).DisableAntiforgery();
    }
}
